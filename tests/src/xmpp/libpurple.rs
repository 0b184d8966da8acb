//! libpurple's XMPP support as a client, through bitlbee-libpurple (the
//! harness in `gadugadu::bitlbee`), trusting a CA of the test's choosing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::DOMAIN;
use crate::gadugadu::bitlbee::Bitlbee;
use crate::netns::Netns;

/// What libpurple finds in /etc of a namespace (`ip netns exec` mounts
/// /etc/netns/NAME/* over /etc): the certificates it trusts (every file of
/// /etc/ssl/certs) and the hosts file that names the server, so that it
/// checks the certificate for the XMPP domain. Removed again when dropped.
pub struct NamespaceEtc {
    dir: PathBuf,
}

impl NamespaceEtc {
    /// Trust only `ca`; `DOMAIN` is at `server`.
    pub fn install(ns: &Netns, ca: &Path, server: IpAddr) -> anyhow::Result<Self> {
        let dir = PathBuf::from("/etc/netns").join(&ns.name);
        let certs = dir.join("ssl/certs");
        std::fs::create_dir_all(&certs)?;
        std::fs::copy(ca, certs.join("test-ca.pem"))?;
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1 localhost\n{server} {DOMAIN}\n"),
        )?;
        Ok(NamespaceEtc { dir })
    }
}

impl Drop for NamespaceEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bitlbee {
    /// Log in to XMPP as `user@test.local`, reaching the server by the name
    /// `DOMAIN` (no DNS lookup: see [`NamespaceEtc`]), and add `buddy` (a
    /// bare JID) as the contact `nick`. libpurple takes STARTTLS when the
    /// server offers it (`opportunistic_tls`).
    pub fn login_xmpp(
        &mut self,
        user: &str,
        password: &str,
        buddy: &str,
        nick: &str,
    ) -> anyhow::Result<()> {
        self.control(
            &format!("account add jabber {user}@{DOMAIN} {password}"),
            "Account successfully added",
        )?;
        self.control(
            &format!("account jabber set connect_server {DOMAIN}"),
            "connect_server",
        )?;
        self.control(
            "account jabber set connection_security opportunistic_tls",
            "connection_security",
        )?;
        self.control("account jabber on", "Logged in")?;
        self.control(&format!("add jabber {buddy} {nick}"), "to contact list")?;
        Ok(())
    }
}
