//! Every squid/ snippet passes `squid -k parse` in a minimal squid.conf that
//! keeps everything Squid writes in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use imspector_protocols::ProtocolKind;

fn squid_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../squid")
}

/// Runs `squid -k parse` on a squid.conf that includes `snippets` where the
/// Debian squid.conf has its local rules; returns Squid's complaints on failure.
fn parse_with(snippets: &[PathBuf]) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().display();
    let includes: String = snippets
        .iter()
        .map(|s| format!("include {}\n", s.display()))
        .collect();
    let conf = format!(
        "pid_filename {t}/squid.pid
cache_log {t}/cache.log
access_log {t}/access.log
cache_store_log none
coredump_dir {t}
http_port 127.0.0.1:3128
acl localnet src 10.0.0.0/8
acl localnet src fc00::/7
acl SSL_ports port 443
{includes}http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
"
    );
    let path = tmp.path().join("squid.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new("squid")
        .args(["-k", "parse", "-f"])
        .arg(&path)
        .output()
        .expect("squid is installed (Debian package squid)");
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let complaints = ["ERROR", "WARNING", "FATAL", "unrecognized", "Bungled"];
    if out.status.success() && !complaints.iter().any(|c| log.contains(c)) {
        Ok(())
    } else {
        Err(log)
    }
}

fn snippet(name: &str) -> PathBuf {
    let path = squid_dir().join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

#[test]
fn allow_im_connect_parses() {
    parse_with(&[snippet("allow-im-connect.conf")]).unwrap();
}

#[test]
fn owner_redirect_parses() {
    parse_with(&[
        snippet("allow-im-connect.conf"),
        snippet("owner-redirect.conf"),
    ])
    .unwrap();
}

#[test]
fn cache_peer_parses() {
    parse_with(&[snippet("allow-im-connect.conf"), snippet("cache-peer.conf")]).unwrap();
}

#[test]
fn icap_parses() {
    parse_with(&[snippet("icap-chat-hosts.conf"), snippet("icap.conf")]).unwrap();
}

#[test]
fn a_broken_snippet_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.conf");
    std::fs::write(
        &broken,
        "cache_peer_access imspector allow CONNECT im_ports\n",
    )
    .unwrap();
    let log = parse_with(&[broken]).unwrap_err();
    assert!(log.contains("imspector"), "{log}");
}

#[test]
fn cache_peer_needs_the_acl_of_allow_im_connect() {
    assert!(parse_with(&[snippet("cache-peer.conf")]).is_err());
}

#[test]
fn the_im_port_acl_lists_every_default_port() {
    let text = std::fs::read_to_string(snippet("allow-im-connect.conf")).unwrap();
    let acl = text
        .lines()
        .find_map(|l| l.strip_prefix("acl im_ports port "))
        .expect("acl im_ports line");
    let listed: Vec<u16> = acl.split_whitespace().map(|p| p.parse().unwrap()).collect();
    let defaults: Vec<u16> = ProtocolKind::ALL
        .iter()
        .flat_map(|k| k.default_ports())
        .copied()
        .collect();
    assert_eq!(listed, defaults);
}
