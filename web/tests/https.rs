//! HTTPS with web_cert and web_key, and the refusal to serve a non-loopback
//! address over plain HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use imspector_e2e::web::{add_user, refused, Web};
use rustls::pki_types::ServerName;

const BIN: &str = env!("CARGO_BIN_EXE_imspector-web");

fn logs_and_users(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let users = dir.join("users");
    add_user(Path::new(BIN), &users, "admin", "admin pw", &["--admin"]).unwrap();
    users
}

#[test]
fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let users = logs_and_users(dir.path());
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let config = format!(
        "file_logging_dir={}\nweb_cert={}\nweb_key={}",
        dir.path().join("logs").display(),
        cert.display(),
        key.display()
    );
    let web = Web::start(Path::new(BIN), dir.path(), &config, &users).unwrap();
    assert!(web
        .process
        .output()
        .contains(&format!("https://{}", web.addr)));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(web.addr).unwrap());
    tls.write_all(b"GET /login HTTP/1.1\r\nHost: viewer\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    // The server may close without close_notify once the response is out.
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("name=\"password\""));

    // A client that never starts its handshake is cut off.
    let mut silent = TcpStream::connect(web.addr).unwrap();
    silent
        .set_read_timeout(Some(imspector_web::server::HANDSHAKE_TIMEOUT * 3))
        .unwrap();
    let mut rest = Vec::new();
    assert!(silent.read_to_end(&mut rest).is_ok() && rest.is_empty());

    // Plain HTTP on the HTTPS port gets no page.
    let mut plain = TcpStream::connect(web.addr).unwrap();
    plain
        .write_all(b"GET /login HTTP/1.1\r\nHost: viewer\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("password"));
}

#[test]
fn a_public_address_without_https_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let users = logs_and_users(dir.path());
    let conf = dir.path().join("web.conf");
    let err = refused(
        Path::new(BIN),
        &conf,
        &format!(
            "file_logging_dir={}\nweb_listen=0.0.0.0:8080\nweb_users_filename={}\n",
            dir.path().join("logs").display(),
            users.display()
        ),
    );
    assert!(
        err.contains(&format!(
            "{}:2: web_listen: a non-loopback address needs HTTPS",
            conf.display()
        )),
        "{err}"
    );
}
