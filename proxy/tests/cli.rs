//! The command line as a firewall script sees it: exit codes and messages.

use std::process::{Command, Output};

fn imspector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imspector"))
        .args(args)
        .output()
        .expect("running imspector")
}

fn config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn version_and_help() {
    let out = imspector(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("imspector {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = imspector(&["-h"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["-c <FILE>", "-d", "--check-config", "--version"] {
        assert!(help.contains(flag), "{help}");
    }
}

#[test]
fn check_config_accepts_a_good_file_and_warns_loudly() {
    let file =
        config("# the original's syntax\nport=16667\nirc_protocol=on\ncolour=blue\nicq_ssl=on\n");
    let path = file.path().display().to_string();
    let out = imspector(&["-c", &path, "--check-config"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{path}: configuration OK\n")
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: {path}:4: unknown option \"colour\" ignored"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: {path}:5: option icq_ssl is not implemented yet and has NO EFFECT"
        )),
        "{stderr}"
    );
}

#[test]
fn check_config_rejects_a_bad_value_with_file_line_and_key() {
    let file = config("irc_protocol=on\n\nirc_ports=6667,sixty\n");
    let path = file.path().display().to_string();
    let out = imspector(&["-c", &path, "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("imspector: error: {path}:3: irc_ports: \"sixty\" is not a port number\n")
    );
}

/// What a start would refuse, --check-config refuses too, on the line of the
/// option at fault (for a missing one, the option that needs it).
#[test]
fn check_config_checks_the_sinks_as_a_start_does() {
    for (text, want) in [
        (
            "irc_protocol=on\nmysql_server=localhost\nmysql_username=u\n",
            "2: mysql_server: MySQL logging needs mysql_database too",
        ),
        (
            "irc_protocol=on\nsyslog_logging=on\nsyslog_facility=bogus\n",
            "3: syslog_facility: \"bogus\" is not a facility",
        ),
        (
            "irc_protocol=on\nsqlite_file=/tmp/x.db\nspool_sync=sometimes\n",
            "3: spool_sync: \"sometimes\" is not group, always or off",
        ),
    ] {
        let file = config(text);
        let path = file.path().display().to_string();
        // A start in the foreground refuses the same way, before binding.
        for mode in ["--check-config", "-d"] {
            let out = imspector(&["-c", &path, mode]);
            assert_eq!(out.status.code(), Some(2), "{mode} {text}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                format!("imspector: error: {path}:{want}\n")
            );
        }
    }
}

/// Everything else a start reads is checked before binding too: a bad
/// value is exit 2 with file, line and option from --check-config and from
/// a start alike (a list file's own error names that file and its line).
#[test]
fn check_config_checks_filters_icap_tls_metrics_alerts_and_retention_as_a_start_does() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl.txt");
    std::fs::write(&acl, "deny alice bob\npermit all\n").unwrap();
    let alerts = dir.path().join("alerts.txt");
    std::fs::write(&alerts, "fine\n/(unclosed/\n").unwrap();
    let logs = format!("file_logging_dir={}\n", dir.path().display());
    let cases = [
        (
            format!("{logs}acl_filename={}\n", acl.display()),
            format!(
                "{}:2: a rule starts with allow or deny, not \"permit\"",
                acl.display()
            ),
        ),
        (
            format!("{logs}\nicap_port=yes\n"),
            "3: icap_port: \"yes\": invalid digit found in string".to_string(),
        ),
        (
            format!("{logs}ssl=on\n"),
            "2: ssl: ssl=on needs ssl_ca_cert and ssl_ca_key (a certificate per server, see `imspector ca create`) or ssl_cert and ssl_key (one for all)".to_string(),
        ),
        (
            format!("{logs}metrics_listen=localhost\n"),
            "2: metrics_listen: \"localhost\": invalid socket address syntax".to_string(),
        ),
        (
            format!("{logs}retention_days=0\n"),
            "2: retention_days: must be at least 1 (leave it unset to keep events for ever)"
                .to_string(),
        ),
        (
            format!("{logs}alert_command=true\n"),
            "2: alert_command: needs alert_filename, the rules that raise alerts".to_string(),
        ),
        (
            format!("{logs}alert_filename={}\nalert_command=true\n", alerts.display()),
            format!("{}:2: bad pattern: ", alerts.display()),
        ),
        (
            "log_failure=block\n".to_string(),
            "1: log_failure: block, and no logging is configured: every chat would be blocked"
                .to_string(),
        ),
    ];
    for (text, want) in cases {
        let file = config(&format!("irc_protocol=on\n{text}"));
        let path = file.path().display().to_string();
        // A message about the list file itself starts with that file.
        let want = if want.starts_with('/') {
            want
        } else {
            let (line, rest) = want.split_once(':').unwrap();
            format!("{path}:{}:{rest}", line.parse::<usize>().unwrap() + 1)
        };
        for mode in ["--check-config", "-d"] {
            let out = imspector(&["-c", &path, mode]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{mode} {text}: {stderr}");
            assert!(
                stderr.starts_with(&format!("imspector: error: {want}")),
                "{mode} {text}: {stderr}"
            );
        }
    }
}

#[test]
fn a_missing_config_file_is_an_error() {
    let out = imspector(&["-c", "/nonexistent/imspector.conf", "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("imspector: error: /nonexistent/imspector.conf: cannot read"));
}

/// examples/imspector.conf shows every option the program knows, and is valid.
#[test]
fn the_example_configuration_is_complete_and_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/imspector.conf");
    let text = std::fs::read_to_string(path).unwrap();
    for (key, _) in imspector::config::KNOWN_OPTIONS {
        let shown = text.lines().any(|l| {
            l.trim_start_matches('#')
                .split_once('=')
                .is_some_and(|(k, _)| k == *key)
        });
        assert!(shown, "examples/imspector.conf does not show {key}");
    }
    let out = imspector(&["-c", path, "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// README's option tables name only options the program knows, and every
/// option it supports.
#[test]
fn readme_tables_name_every_option_and_only_real_ones() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    // The first cell of a table row, `a`, `b` (new): the names between backticks.
    let named: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|row| {
            let first = row.split('|').next().unwrap_or_default();
            first.split('`').step_by(2).map(str::trim)
        })
        .collect();
    for name in &named {
        assert!(
            imspector::config::support_of(name).is_some(),
            "README names {name}, which imspector does not know"
        );
    }
    for (key, support) in imspector::config::KNOWN_OPTIONS {
        if *support == imspector::config::Support::Supported {
            assert!(named.contains(key), "README's tables do not list {key}");
        }
    }
}
