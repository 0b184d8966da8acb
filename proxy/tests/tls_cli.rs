//! `imspector ca create` and the TLS options as an admin meets them.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn imspector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imspector"))
        .args(args)
        .output()
        .expect("running imspector")
}

fn check(dir: &std::path::Path, text: &str) -> Output {
    let conf = dir.join("imspector.conf");
    std::fs::write(&conf, text).unwrap();
    imspector(&["-c", conf.to_str().unwrap(), "--check-config"])
}

#[test]
fn ca_create_writes_a_private_key_and_a_usable_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let out = imspector(&["ca", "create", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    for how in ["update-ca-certificates", "certutil", "Firefox", "Pidgin"] {
        assert!(printed.contains(how), "{printed}");
    }
    let key = dir.join("imspector-ca.key");
    let cert = dir.join("imspector-ca.pem");
    assert_eq!(key.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&cert)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    let again = imspector(&["ca", "create", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("File exists"));

    let conf = format!(
        "ssl=on\nssl_ca_cert={}\nssl_ca_key={}\n",
        cert.display(),
        key.display()
    );
    let out = check(tmp.path(), &conf);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A key that is not the certificate's is refused, naming both.
    let other = tmp.path().join("other");
    assert!(imspector(&["ca", "create", other.to_str().unwrap()])
        .status
        .success());
    let conf = format!(
        "ssl=on\nssl_ca_cert={}\nssl_ca_key={}\n",
        cert.display(),
        other.join("imspector-ca.key").display()
    );
    let out = check(tmp.path(), &conf);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":2: ssl_ca_cert: "), "{stderr}");
    assert!(stderr.contains("is not the key of"), "{stderr}");
}

#[test]
fn ssl_options_are_checked_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("imspector.conf").display().to_string();
    let out = check(tmp.path(), "irc_protocol=on\nssl=on\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&format!(
        "imspector: error: {path}:2: ssl: ssl=on needs ssl_ca_cert and ssl_ca_key"
    )));
    let out = check(
        tmp.path(),
        "ssl=on\nssl_cert=/etc/hostname\nssl_key=/etc/hostname\nssl_verify=maybe\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&format!(
        "imspector: error: {path}:2: ssl_cert: /etc/hostname"
    )));
    let out = check(tmp.path(), "irc_protocol=on\nirc_tls_ports=6697,x\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("imspector: error: {path}:2: irc_tls_ports: \"x\" is not a port number\n")
    );
}
