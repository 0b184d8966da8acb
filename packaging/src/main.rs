//! `imspector-docs OUTDIR`: writes what the Debian package ships besides the
//! binaries. The man pages of the three binaries and of their subcommands come
//! from the clap definitions the binaries parse with, imspector.conf(5) from
//! README's configuration tables, and the bash, zsh and fish completions from
//! the same clap definitions, so none of them can drift from the code.

mod conf_page;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

/// The binaries, with their man page section: daemons and admin tools are 8.
fn commands() -> [clap::Command; 3] {
    [
        <imspector::cli::Cli as clap::CommandFactory>::command(),
        imspector_rules::cli::command(),
        <imspector_web::cli::Cli as clap::CommandFactory>::command(),
    ]
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: imspector-docs OUTDIR");
        return ExitCode::from(2);
    };
    match write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imspector-docs: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn write_all(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    for command in commands() {
        write_man_pages(&command, &man)?;
        write_completions(command, &out.join("completions"))?;
    }
    std::fs::write(
        man.join("imspector.conf.5"),
        conf_page::render(include_str!("../../README.md")),
    )
}

/// NAME.8, and NAME-SUB.8 for each subcommand (recursively).
fn write_man_pages(command: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let command = command.clone().disable_help_subcommand(true);
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section("8")
        .manual("IMSpector")
        .render(&mut page)?;
    std::fs::write(dir.join(format!("{}.8", command.get_name())), page)?;
    for sub in command.get_subcommands() {
        // The page is imspector-rules-generate(8); its synopsis the command typed.
        let name = format!("{}-{}", command.get_name(), sub.get_name());
        let typed = format!(
            "{} {}",
            command.get_bin_name().unwrap_or(command.get_name()),
            sub.get_name()
        );
        let sub = sub.clone().name(name).bin_name(typed);
        write_man_pages(&sub, dir)?;
    }
    Ok(())
}

/// completions/bash/NAME, completions/zsh/_NAME, completions/fish/NAME.fish:
/// the names each shell looks for when the command is first completed.
fn write_completions(mut command: clap::Command, dir: &Path) -> std::io::Result<()> {
    let name = command.get_name().to_string();
    for (shell, file) in [
        (Shell::Bash, name.clone()),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let shell_dir = dir.join(shell.to_string());
        std::fs::create_dir_all(&shell_dir)?;
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, &name, &mut script);
        std::fs::write(shell_dir.join(file), script)?;
    }
    Ok(())
}
