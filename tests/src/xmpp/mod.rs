//! Real XMPP software, the one harness of the XMPP tests: the prosody server
//! (Debian) with a MUC service and HTTP file sharing, plain or with TLS;
//! slixmpp clients (PyPI, the test virtualenv) driven through `client.py`;
//! sendxmpp (Debian); libpurple through bitlbee-libpurple (Debian).

mod libpurple;
mod prosody;
mod slixmpp;

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;

use crate::netns::Netns;

pub use libpurple::NamespaceEtc;
pub use prosody::{Encryption, Prosody};
pub use slixmpp::{Slixmpp, Transport};

pub const DOMAIN: &str = "test.local";
pub const ROOMS: &str = "conference.test.local";
pub const UPLOAD: &str = "upload.test.local";

/// Send one chat message with sendxmpp (its own connection) from `ns`.
pub fn sendxmpp(
    ns: &Netns,
    server: SocketAddr,
    user: &str,
    password: &str,
    to: &str,
    text: &str,
) -> anyhow::Result<()> {
    let mut command = ns.command("sendxmpp");
    command
        .args(["-u", user, "-p", password, "-j"])
        .arg(server.to_string())
        .args(["-o", DOMAIN, "--message-type=chat", to])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().context("starting sendxmpp")?;
    child
        .stdin
        .take()
        .context("sendxmpp's stdin")?
        .write_all(text.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "sendxmpp failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
