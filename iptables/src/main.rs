use std::process::ExitCode;

fn main() -> ExitCode {
    imspector_rules::cli::run(std::env::args().collect())
}
