//! TLS end to end: a real ngircd with a TLS port whose certificate a test CA
//! signed, real ii clients (the local one through socat's TLS, trusting the
//! interception CA that `imspector ca create` made), the imspector binary in
//! the gateway intercepting, or relaying untouched with `ssl` off.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use imspector_e2e::gadugadu::bitlbee::Bitlbee;
use imspector_e2e::imspector::{assert_lines, now};
use imspector_e2e::irc::{Ii, Inspircd, Ngircd};
use imspector_e2e::tls::{InterceptionCa, Irssi, TestCa, TlsTunnel};
use imspector_e2e::xmpp::{Encryption, NamespaceEtc, Prosody, Slixmpp, Transport, DOMAIN};
use imspector_e2e::{Imspector, Rig};

const PORT: u16 = 16667;
/// Where socat listens for the local ii, in the client's namespace.
const TUNNEL: u16 = 7000;

struct TlsScene {
    rig: Rig,
    _server: Ngircd,
    ims: Imspector,
    servers_ca: TestCa,
    ours: InterceptionCa,
}

/// The certificate ngircd serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServerCert {
    /// Signed by the CA imspector trusts through `ssl_verify_dir`.
    Good,
    /// The same CA, validity ended yesterday.
    Expired,
    /// Signed by a CA nobody trusts.
    UnknownIssuer,
}

/// A rig with ngircd serving TLS on 6697 as `irc.test` with `cert`, and
/// imspector started with `config` plus, when `intercept`, the interception
/// options.
fn scene(config: &str, intercept: bool, cert: ServerCert) -> anyhow::Result<TlsScene> {
    let rig = Rig::new()?;
    rig.redirect(&[6667, 6697], PORT)?;
    let servers_ca = TestCa::new(&rig.subdir("public-ca")?)?;
    let unknown_ca;
    let issuer = if cert == ServerCert::UnknownIssuer {
        unknown_ca = TestCa::new(&rig.subdir("unknown-ca")?)?;
        &unknown_ca
    } else {
        &servers_ca
    };
    let cert = issuer.server_cert(
        &rig.subdir("ngircd")?,
        "irc.test",
        IpAddr::V4(rig.server_ip),
        cert == ServerCert::Expired,
    )?;
    let server = Ngircd::start_tls(&rig.server, &rig.subdir("ngircd")?, &cert)?;
    let ours = InterceptionCa::create(&rig.subdir("ca")?)?;
    let mut text = config.to_string();
    if intercept {
        text.push_str(&ours.config(&rig.subdir("leaves")?, &servers_ca));
    }
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, &text)?;
    Ok(TlsScene {
        rig,
        _server: server,
        ims,
        servers_ca,
        ours,
    })
}

impl TlsScene {
    fn tls_target(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.rig.server_ip), 6697)
    }

    /// The local user over TLS to 6697: ii, through socat trusting `ca`.
    fn local_over_tls(
        &self,
        nick: &str,
        ca: &std::path::Path,
        sni: Option<&str>,
        name: &str,
    ) -> anyhow::Result<(TlsTunnel, Ii)> {
        let dir = self.rig.subdir("clients")?;
        let tunnel = TlsTunnel::start(
            &self.rig.client,
            &dir,
            TUNNEL,
            self.tls_target(),
            ca,
            sni,
            name,
        )?;
        let ii = Ii::start_at(
            &self.rig.client,
            &dir,
            Ipv4Addr::LOCALHOST.into(),
            TUNNEL,
            nick,
            None,
        )?;
        Ok((tunnel, ii))
    }
}

#[test]
fn irc_over_tls_through_ngircd_with_irssi_is_intercepted_and_logged() -> anyhow::Result<()> {
    let since = now();
    let s = scene("irc_protocol=on\n", true, ServerCert::Good)?;
    assert!(
        s.ours.printed.contains("update-ca-certificates"),
        "{}",
        s.ours.printed
    );
    let clients = s.rig.subdir("clients")?;
    let bob = Ii::remote(&s.rig, &clients, "bob")?;
    // irssi connects with TLS to irc.test:6697 and verifies it against our CA only.
    let server_ip = IpAddr::V4(s.rig.server_ip);
    let alice = Irssi::start(&s.rig.client, &clients, "alice", "irc.test", server_ip)?;
    // Private messages in the window the test reads.
    alice.type_line("/set -clear autocreate_query_level")?;
    alice.wait_screen("autocreate_query_level")?;
    alice.type_line(&format!(
        "/connect -tls -tls_verify -tls_cafile {} irc.test 6697",
        s.ours.cert.display()
    ))?;
    alice.wait_screen("welcome to the test")?;
    alice.type_line("/msg bob hello over tls, ünïcödé")?;
    bob.wait_received("alice", "alice", "hello over tls, ünïcödé")?;
    bob.msg("alice", "hi alice")?;
    alice.wait_screen("hi alice")?;
    alice.type_line("/join #tls")?;
    alice.wait_screen("has joined #tls")?;
    bob.join("#tls")?;
    bob.say("#tls", "in the channel")?;
    alice.wait_screen("in the channel")?;

    let client = s.rig.client_ip.to_string();
    assert_lines(
        &s.ims.wait_log("IRC", "alice", "bob", 2)?,
        &client,
        since,
        &["1,1,0,,hello over tls, ünïcödé", "0,1,0,,hi alice"],
    );
    assert_lines(
        &s.ims.wait_log("IRC", "alice", "#tls", 1)?,
        &client,
        since,
        &["0,1,0,,bob: in the channel"],
    );
    // The leaf made for the name is kept for the next start.
    assert!(s.rig.dir.path().join("leaves/irc.test.pem").exists());
    Ok(())
}

#[test]
fn a_client_hello_without_sni_gets_a_certificate_for_the_address() -> anyhow::Result<()> {
    let since = now();
    let s = scene("irc_protocol=on\n", true, ServerCert::Good)?;
    let bob = Ii::remote(&s.rig, &s.rig.subdir("clients")?, "bob")?;
    let server_ip = s.rig.server_ip.to_string();
    let (_tunnel, alice) = s.local_over_tls("alice", &s.ours.cert, None, &server_ip)?;
    alice.msg("bob", "no sni")?;
    bob.wait_received("alice", "alice", "no sni")?;
    s.ims.wait_output(&format!(
        "TLS ClientHello without a server name (SNI); the certificate names the destination {server_ip}"
    ))?;
    assert_lines(
        &s.ims.wait_log("IRC", "alice", "bob", 1)?,
        &s.rig.client_ip.to_string(),
        since,
        &["1,1,0,,no sni"],
    );
    Ok(())
}

#[test]
fn a_server_with_an_expired_certificate_is_closed_under_ssl_verify_block() -> anyhow::Result<()> {
    let s = scene(
        "irc_protocol=on\nssl_verify=block\n",
        true,
        ServerCert::Expired,
    )?;
    let dir = s.rig.subdir("clients")?;
    let tunnel = TlsTunnel::start(
        &s.rig.client,
        &dir,
        TUNNEL,
        s.tls_target(),
        &s.ours.cert,
        Some("irc.test"),
        "irc.test",
    )?;
    // A plain connection to the tunnel makes socat start its TLS.
    let _conn = s
        .rig
        .client
        .run(|| std::net::TcpStream::connect(("127.0.0.1", TUNNEL)))??;
    s.ims.wait_output("IRC to ")?;
    s.ims.wait_output(
        "6697: server TLS with irc.test: invalid peer certificate: certificate expired: ",
    )?;
    assert!(s.ims.process.output().contains("ago); closed"));
    imspector_e2e::wait::until("socat to see the connection closed", || {
        let out = tunnel.process.output();
        (out.contains("SSL_connect") || out.contains("exiting with status")).then_some(())
    })?;
    Ok(())
}

#[test]
fn a_server_of_an_unknown_issuer_is_accepted_with_a_warning_under_ssl_verify_selfsigned(
) -> anyhow::Result<()> {
    let since = now();
    let config = "irc_protocol=on\nssl_verify=selfsigned\n";
    let s = scene(config, true, ServerCert::UnknownIssuer)?;
    let bob = Ii::remote(&s.rig, &s.rig.subdir("clients")?, "bob")?;
    let (_tunnel, alice) = s.local_over_tls("alice", &s.ours.cert, Some("irc.test"), "irc.test")?;
    alice.msg("bob", "through an untrusted server")?;
    bob.wait_received("alice", "alice", "through an untrusted server")?;
    s.ims.wait_output(
        "server irc.test: certificate not signed by a trusted CA; accepted (ssl_verify=selfsigned)",
    )?;
    assert_lines(
        &s.ims.wait_log("IRC", "alice", "bob", 1)?,
        &s.rig.client_ip.to_string(),
        since,
        &["1,1,0,,through an untrusted server"],
    );
    Ok(())
}

#[test]
fn without_ssl_tls_is_relayed_untouched_and_logged_once() -> anyhow::Result<()> {
    let since = now();
    let s = scene("irc_protocol=on\n", false, ServerCert::Good)?;
    let bob = Ii::remote(&s.rig, &s.rig.subdir("clients")?, "bob")?;
    // The client trusts the real server's CA: nothing is intercepted.
    let ca = s.servers_ca.cert_file();
    let (_tunnel, alice) = s.local_over_tls("alice", &ca, Some("irc.test"), "irc.test")?;
    alice.msg("bob", "not seen by the proxy")?;
    bob.wait_received("alice", "alice", "not seen by the proxy")?;
    let client = s.rig.client_ip.to_string();
    assert_lines(
        &s.ims.wait_log("IRC", &client, "irc.test", 1)?,
        &client,
        since,
        &["1,1,0,,encrypted session (TLS) with irc.test:6697, not inspected"],
    );
    assert!(!s.ims.log_file("IRC", "alice", "bob").exists());
    Ok(())
}

#[test]
fn https_protocol_tunnels_port_443_untouched_with_one_event() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let since = now();
    let rig = Rig::new()?;
    let http_port = 8080;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        &format!("irc_protocol=on\nhttp_port={http_port}\nhttps_protocol=on\n"),
    )?;
    ims.wait_output("CONNECT listener on")?;
    // The "web server": answers what it gets, reversed, then closes.
    let listener = rig
        .server
        .run(|| std::net::TcpListener::bind(("0.0.0.0", 443)))??;
    let web = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        let mut got = Vec::new();
        conn.read_to_end(&mut got)?;
        got.reverse();
        conn.write_all(&got)
    });
    let server = SocketAddr::new(IpAddr::V4(rig.server_ip), 443);
    let answer = rig
        .gateway
        .run(move || -> std::io::Result<(String, Vec<u8>)> {
            let mut conn = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, http_port))?;
            conn.write_all(format!("CONNECT {server} HTTP/1.1\r\n\r\n\x16\x03\x01").as_bytes())?;
            let mut reader = BufReader::new(conn.try_clone()?);
            let mut status = String::new();
            reader.read_line(&mut status)?;
            let mut blank = String::new();
            reader.read_line(&mut blank)?;
            conn.write_all(b"opaque bytes")?;
            conn.shutdown(std::net::Shutdown::Write)?;
            let mut back = Vec::new();
            reader.read_to_end(&mut back)?;
            Ok((status, back))
        })??;
    web.join().expect("web server thread")?;
    assert_eq!(answer.0, "HTTP/1.1 200 Connection established\r\n");
    assert_eq!(answer.1, b"setyb euqapo\x01\x03\x16");
    let server_ip = rig.server_ip.to_string();
    assert_lines(
        &ims.wait_log("HTTPS", "127.0.0.1", &server_ip, 1)?,
        "127.0.0.1",
        since,
        &[&format!(
            "1,1,0,,encrypted session (HTTPS tunnel) with {server_ip}:443, not inspected"
        )],
    );
    Ok(())
}

#[test]
fn irc_starttls_through_inspircd_is_intercepted_by_the_same_core() -> anyhow::Result<()> {
    let since = now();
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let server_ip = IpAddr::V4(rig.server_ip);
    let servers_ca = TestCa::new(&rig.subdir("public-ca")?)?;
    let dir = rig.subdir("inspircd")?;
    let cert = servers_ca.server_cert(&dir, "irc.test", server_ip, false)?;
    let _server = Inspircd::start_starttls(&rig.server, &dir, &cert)?;
    let ours = InterceptionCa::create(&rig.subdir("ca")?)?;
    let config = format!(
        "irc_protocol=on\n{}",
        ours.config(&rig.subdir("leaves")?, &servers_ca)
    );
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, &config)?;
    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    // irssi asks for STARTTLS, and verifies irc.test against our CA only.
    let alice = Irssi::start(&rig.client, &clients, "alice", "irc.test", server_ip)?;
    // Private messages in the window the test reads.
    alice.type_line("/set -clear autocreate_query_level")?;
    alice.wait_screen("autocreate_query_level")?;
    alice.type_line(&format!(
        "/connect -tls_verify -tls_cafile {} -starttls irc.test 6667",
        ours.cert.display()
    ))?;
    alice.wait_screen("welcome to the test")?;
    ims.wait_output("IRC STARTTLS accepted (670); intercepting the TLS")?;
    ims.wait_output("TLS intercepted for irc.test")?;
    alice.type_line("/msg bob hello after starttls")?;
    bob.wait_received("alice", "alice", "hello after starttls")?;
    bob.msg("alice", "hi over tls")?;
    alice.wait_screen("hi over tls")?;
    assert_lines(
        &ims.wait_log("IRC", "alice", "bob", 2)?,
        &rig.client_ip.to_string(),
        since,
        &["1,1,0,,hello after starttls", "0,1,0,,hi over tls"],
    );
    Ok(())
}

/// prosody with a certificate of a test CA (STARTTLS required or optional,
/// direct TLS on 5223), the users alice, bob and carol, and imspector
/// intercepting with a CA that `imspector ca create` made.
struct XmppTlsScene {
    rig: Rig,
    server: Prosody,
    ims: Imspector,
    servers_ca: TestCa,
    ours: InterceptionCa,
    clients: std::path::PathBuf,
}

fn xmpp_scene(require_tls: bool) -> anyhow::Result<XmppTlsScene> {
    let rig = Rig::new()?;
    rig.redirect(&[5222, 5223], PORT)?;
    let servers_ca = TestCa::new(&rig.subdir("public-ca")?)?;
    let dir = rig.subdir("prosody")?;
    let server_ip = IpAddr::V4(rig.server_ip);
    let cert = servers_ca.server_cert(&dir, DOMAIN, server_ip, false)?;
    let encryption = if require_tls {
        Encryption::Required(&cert)
    } else {
        Encryption::Optional(&cert)
    };
    let server = Prosody::start(&rig.server, &dir, server_ip, encryption)?;
    for user in ["alice", "bob", "carol"] {
        server.register(user, "pw")?;
    }
    let ours = InterceptionCa::create(&rig.subdir("ca")?)?;
    let config = format!(
        "jabber_protocol=on\n{}",
        ours.config(&rig.subdir("leaves")?, &servers_ca)
    );
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, &config)?;
    let clients = rig.subdir("clients")?;
    Ok(XmppTlsScene {
        rig,
        server,
        ims,
        servers_ca,
        ours,
        clients,
    })
}

impl XmppTlsScene {
    /// A slixmpp user in the client's namespace, through the proxy.
    fn local(&self, user: &str, addr: SocketAddr, transport: Transport) -> anyhow::Result<Slixmpp> {
        Slixmpp::start(&self.rig.client, &self.clients, user, "pw", addr, transport)
    }

    /// Bob, next to the server, with STARTTLS checking the real certificate.
    fn bob(&self) -> anyhow::Result<Slixmpp> {
        let ca = self.servers_ca.cert_file();
        let transport = Transport::StartTls { ca: &ca };
        Slixmpp::start(
            &self.rig.server,
            &self.clients,
            "bob",
            "pw",
            self.server.addr,
            transport,
        )
    }
}

const ALICE: &str = "alice@test.local";
const BOB: &str = "bob@test.local";
const CAROL: &str = "carol@test.local";

#[test]
fn xmpp_required_starttls_and_direct_tls_through_prosody_are_intercepted() -> anyhow::Result<()> {
    let since = now();
    let s = xmpp_scene(true)?;
    let mut bob = s.bob()?;
    // The local users trust only our CA.
    let ca = &s.ours.cert;
    let mut alice = s.local("alice", s.server.addr, Transport::StartTls { ca })?;
    alice.chat(BOB, "hello over starttls")?;
    bob.wait_received(ALICE, "hello over starttls")?;
    bob.chat(&alice.jid, "hi from bob")?;
    alice.wait_received(BOB, "hi from bob")?;
    s.ims.wait_output("XMPP STARTTLS; intercepting the TLS")?;
    let mut carol = s.local(
        "carol",
        s.server.direct_tls_addr(),
        Transport::DirectTls { ca },
    )?;
    carol.chat(BOB, "hello over direct tls")?;
    bob.wait_received(CAROL, "hello over direct tls")?;
    bob.chat(&carol.jid, "hi from bob")?;
    carol.wait_received(BOB, "hi from bob")?;
    let client = s.rig.client_ip.to_string();
    for (user, first) in [
        (ALICE, "hello over starttls"),
        (CAROL, "hello over direct tls"),
    ] {
        assert_lines(
            &s.ims.wait_log("Jabber", user, BOB, 2)?,
            &client,
            since,
            &[&format!("1,1,0,,{first}"), "0,1,0,,hi from bob"],
        );
    }
    Ok(())
}

#[test]
fn xmpp_optional_starttls_plain_slixmpp_and_libpurple_through_bitlbee() -> anyhow::Result<()> {
    let since = now();
    let s = xmpp_scene(false)?;
    let mut bob = s.bob()?;
    // slixmpp declining the offered STARTTLS: a plain session, read as it is.
    let mut alice = s.local("alice", s.server.addr, Transport::Plain)?;
    alice.chat(BOB, "plain, though TLS was offered")?;
    bob.wait_received(ALICE, "plain, though TLS was offered")?;

    // libpurple takes the STARTTLS and trusts only our CA.
    let server_ip = IpAddr::V4(s.rig.server_ip);
    let _etc = NamespaceEtc::install(&s.rig.client, &s.ours.cert, server_ip)?;
    let mut carol = Bitlbee::start(&s.rig.client, &s.rig.subdir("bitlbee")?)?;
    carol.login_xmpp("carol", "pw", BOB, "bob")?;
    carol.msg("bob", "hello from libpurple")?;
    bob.wait_received(CAROL, "hello from libpurple")?;
    bob.chat(CAROL, "hi libpurple")?;
    carol.wait_msg("bob", "hi libpurple")?;
    s.ims.wait_output("XMPP STARTTLS; intercepting the TLS")?;
    s.ims.wait_output("TLS intercepted for test.local")?;

    let client = s.rig.client_ip.to_string();
    assert_lines(
        &s.ims.wait_log("Jabber", ALICE, BOB, 1)?,
        &client,
        since,
        &["1,1,0,,plain, though TLS was offered"],
    );
    assert_lines(
        &s.ims.wait_log("Jabber", CAROL, BOB, 2)?,
        &client,
        since,
        &["1,1,0,,hello from libpurple", "0,1,0,,hi libpurple"],
    );
    Ok(())
}
