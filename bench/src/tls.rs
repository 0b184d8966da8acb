//! The TLS workloads: IRC over TLS on port 6697 and XMPP with direct TLS
//! (XEP-0368) on port 5223, to a rustls server (the sink for TLS), through
//! imspector intercepting (`ssl=on`, a leaf per name signed by a CA made with
//! `imspector ca create`), through imspector relaying TLS untouched (`ssl`
//! off), and direct, in one run:
//! - handshakes/s: each connection does a full handshake, sends one message
//!   and closes;
//! - messages/s: chat messages over one TLS session per connection; with
//!   interception each one is decrypted, parsed, logged and re-encrypted.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use imspector_protocols::synthetic::{self, IrcTraffic};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::lab::{PLAIN_CLIENT_IP, REDIRECTED_CLIENT_IP, SINK_IP};
use crate::load::{connect, EventCount, EventStore};
use crate::measure::summarize;
use crate::targets::{Kind, LogTo, Target};

/// What runs inside the TLS sessions.
#[derive(Clone, Copy)]
enum App {
    /// IRC over TLS, as clients use it.
    Irc,
    /// XMPP with TLS from the first byte, as on 5223.
    Xmpp,
}

const APPS: [App; 2] = [App::Irc, App::Xmpp];

/// The stream header a client sends first, and the server's answer: its
/// header and the resource binding result a real client asks for, so that
/// the proxy knows the local user before the first message.
const XMPP_CLIENT_HEADER: &str = "<?xml version='1.0'?><stream:stream to='xmpp.bench' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
const XMPP_GREETING: &str = "<?xml version='1.0'?><stream:stream from='xmpp.bench' id='b' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\
    <iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
    <jid>alice@xmpp.bench/bench</jid></bind></iq>";

impl App {
    fn port(self) -> u16 {
        match self {
            App::Irc => 6697,
            App::Xmpp => 5223,
        }
    }

    /// The name the server's certificate is for, and the client's SNI.
    fn server_name(self) -> &'static str {
        match self {
            App::Irc => "irc.bench",
            App::Xmpp => "xmpp.bench",
        }
    }

    fn title(self) -> &'static str {
        match self {
            App::Irc => "IRC over TLS on port 6697",
            App::Xmpp => "XMPP with direct TLS (XEP-0368) on port 5223",
        }
    }

    /// What the server sends once the session is up; the client reads it
    /// before it sends anything.
    fn greeting(self) -> &'static [u8] {
        match self {
            App::Irc => b"",
            App::Xmpp => XMPP_GREETING.as_bytes(),
        }
    }

    /// A session's bytes from the client: what opens it, then `messages`.
    fn session_data(self, messages: &[u8]) -> Vec<u8> {
        let opening = match self {
            App::Irc => "",
            App::Xmpp => XMPP_CLIENT_HEADER,
        };
        [opening.as_bytes(), messages].concat()
    }

    /// About 1 MiB of chat messages to bob, and how many.
    fn chat_block(self) -> (Vec<u8>, u64) {
        let irc = synthetic::irc(IrcTraffic::Chat, 1 << 20, 9);
        let lines = irc.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        match self {
            App::Irc => {
                let count = lines.count() as u64;
                (irc, count)
            }
            // The same texts, as XMPP chat messages.
            App::Xmpp => {
                let mut block = Vec::with_capacity(irc.len() * 2);
                let mut count = 0;
                for line in lines {
                    let line = String::from_utf8_lossy(line);
                    let text = line.split_once(" :").map_or("", |(_, t)| t.trim_end());
                    block.extend_from_slice(xmpp_message(count, text).as_bytes());
                    count += 1;
                }
                (block, count)
            }
        }
    }

    fn one_message(self) -> Vec<u8> {
        match self {
            App::Irc => b"PRIVMSG bob :one line\r\n".to_vec(),
            App::Xmpp => xmpp_message(0, "one message").into_bytes(),
        }
    }

    /// What the server answers when the client closes: the count of
    /// plaintext bytes it got, inside an element for XMPP (text outside any
    /// element would end the proxy's inspection of the stream).
    fn answer(self, count: usize) -> String {
        match self {
            App::Irc => format!("{count}\n"),
            App::Xmpp => format!("<received>{count}</received>"),
        }
    }
}

fn xmpp_message(id: u64, text: &str) -> String {
    let body = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("<message to='bob@xmpp.bench' type='chat' id='m{id}'><body>{body}</body></message>")
}

/// The ways a TLS connection goes in this workload.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Direct,
    Untouched,
    Intercepted,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Direct => "direct",
            Way::Untouched => "imspector, ssl off (TLS relayed untouched)",
            Way::Intercepted => "imspector, ssl=on (intercepted, parsed, logged)",
        }
    }
}

/// Volumes of one TLS run.
pub struct TlsPlan {
    pub runs: usize,
    pub connections: usize,
    /// Handshakes per connection thread.
    pub handshakes: usize,
    /// Repeats of the 1 MiB chat block per connection.
    pub chat_repeats: usize,
}

/// Medians and ranges of one app on one way, per run.
#[derive(Default, Clone)]
struct Figures {
    handshakes: Vec<f64>,
    messages: Vec<f64>,
}

pub fn run(imspector: &Path, plan: &TlsPlan) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("imspector-bench-tls")
        .tempdir()?;
    let pki = Pki::make(dir.path(), imspector)?;
    let _servers = start_servers(&pki)?;
    let client = Arc::new(pki.client_config()?);
    let ways = [Way::Direct, Way::Untouched, Way::Intercepted];
    let mut figures = vec![vec![Figures::default(); ways.len()]; APPS.len()];
    let blocks: Vec<_> = APPS
        .iter()
        .map(|app| {
            let (block, count) = app.chat_block();
            (Arc::new(block), count)
        })
        .collect();
    for _ in 0..plan.runs {
        for (w, &way) in ways.iter().enumerate() {
            let target = match way {
                Way::Direct => None,
                Way::Untouched => Some(Target::start_with(
                    Kind::Imspector,
                    imspector,
                    LogTo::Files,
                    "",
                )?),
                Way::Intercepted => Some(Target::start_with(
                    Kind::Imspector,
                    imspector,
                    LogTo::Files,
                    &pki.intercept_config(),
                )?),
            };
            let source = if way == Way::Direct {
                PLAIN_CLIENT_IP
            } else {
                REDIRECTED_CLIENT_IP
            };
            let store = target.as_ref().and_then(|t| t.events.as_ref());
            for (a, &app) in APPS.iter().enumerate() {
                let run = Run {
                    client: &client,
                    source,
                    app,
                    plan,
                };
                // Warm up: the first connection makes the leaf for the name.
                session(&client, source, app, &app.session_data(&app.one_message()))?;
                figures[a][w].handshakes.push(run.handshakes()?);
                let (block, per_block) = &blocks[a];
                let logged = (way == Way::Intercepted).then_some(store).flatten();
                figures[a][w]
                    .messages
                    .push(run.messages(block, *per_block, logged)?);
            }
        }
    }
    for (a, app) in APPS.iter().enumerate() {
        print_table(*app, plan, &ways, &figures[a], blocks[a].1);
    }
    Ok(())
}

/// One app's measurements through one way.
struct Run<'a> {
    client: &'a Arc<rustls::ClientConfig>,
    source: std::net::Ipv4Addr,
    app: App,
    plan: &'a TlsPlan,
}

impl Run<'_> {
    /// Full handshakes per second, each session one message.
    fn handshakes(&self) -> anyhow::Result<f64> {
        let data = Arc::new(self.app.session_data(&self.app.one_message()));
        let start = Instant::now();
        let threads: Vec<_> = (0..self.plan.connections)
            .map(|_| {
                let (client, data) = (self.client.clone(), data.clone());
                let (source, app, n) = (self.source, self.app, self.plan.handshakes);
                std::thread::spawn(move || -> anyhow::Result<()> {
                    for _ in 0..n {
                        session(&client, source, app, &data)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for t in threads {
            t.join().expect("handshake thread")?;
        }
        let total = (self.plan.connections * self.plan.handshakes) as f64;
        Ok(total / start.elapsed().as_secs_f64())
    }

    /// Chat messages per second, `block` repeated over one session per
    /// connection; with a `logged` store, until every message is logged.
    fn messages(
        &self,
        block: &Arc<Vec<u8>>,
        per_block: u64,
        logged: Option<&EventStore>,
    ) -> anyhow::Result<f64> {
        let per_run = per_block * (self.plan.chat_repeats * self.plan.connections) as u64;
        let mut count = EventCount::default();
        if let Some(store) = logged {
            count.update(store)?;
        }
        let before = count.events;
        let start = Instant::now();
        let threads: Vec<_> = (0..self.plan.connections)
            .map(|_| {
                let (client, block) = (self.client.clone(), block.clone());
                let (source, app, repeat) = (self.source, self.app, self.plan.chat_repeats);
                std::thread::spawn(move || -> anyhow::Result<()> {
                    let data = app.session_data(&block.repeat(repeat));
                    session(&client, source, app, &data)
                })
            })
            .collect();
        for t in threads {
            t.join().expect("chat thread")?;
        }
        if let Some(store) = logged {
            // Done once every message is in the log.
            count.wait_for(store, before + per_run)?;
        }
        Ok(per_run as f64 / start.elapsed().as_secs_f64())
    }
}

fn print_table(app: App, plan: &TlsPlan, ways: &[Way], figures: &[Figures], per_block: u64) {
    let per_run = per_block * (plan.chat_repeats * plan.connections) as u64;
    println!("## TLS: {}, intercepted and not\n", app.title());
    println!(
        "{} connections, {} runs. Handshakes: {} per connection per run, each a full TLS 1.3 \
         handshake (ECDSA P-256, no resumption), one chat message and a close. Messages: \
         {per_run} chat messages per run over one TLS session per connection. Intercepted: two \
         handshakes per connection (client side with a leaf from the CA, server side verified), \
         every message decrypted, parsed, logged to files and encrypted again.\n",
        plan.connections, plan.runs, plan.handshakes
    );
    println!("| way | handshakes/s (median) | range | messages/s (median) | range |");
    println!("|---|---|---|---|---|");
    for (way, figures) in ways.iter().zip(figures) {
        let (Some(h), Some(m)) = (summarize(&figures.handshakes), summarize(&figures.messages))
        else {
            continue;
        };
        println!(
            "| {} | {:.0} | {:.0} .. {:.0} | {:.0} | {:.0} .. {:.0} |",
            way.name(),
            h.median,
            h.min,
            h.max,
            m.median,
            m.min,
            m.max
        );
    }
    println!();
}

/// One TLS session to the server from `source`: read the app's greeting,
/// send `data`, close, and check that the server counted every byte.
fn session(
    config: &Arc<rustls::ClientConfig>,
    source: std::net::Ipv4Addr,
    app: App,
    data: &[u8],
) -> anyhow::Result<()> {
    let to = SocketAddr::new(IpAddr::V4(SINK_IP), app.port());
    let sock = connect(source, to)?;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from(app.server_name())?;
    let conn = rustls::ClientConnection::new(config.clone(), name)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut greeting = vec![0; app.greeting().len()];
    tls.read_exact(&mut greeting)?;
    if greeting != app.greeting() {
        bail!(
            "the TLS server greeted with {:?}",
            String::from_utf8_lossy(&greeting)
        );
    }
    for chunk in data.chunks(64 * 1024) {
        tls.write_all(chunk)?;
    }
    tls.conn.send_close_notify();
    tls.flush()?;
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock)?;
    }
    tls.sock.shutdown(Shutdown::Write)?;
    let mut answer = String::new();
    match tls.read_to_string(&mut answer) {
        Ok(_) => {}
        // The peer may close the socket right after its close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    let got: usize = answer
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .with_context(|| format!("TLS server answered {answer:?}"))?;
    if got != data.len() {
        bail!("the TLS server got {got} bytes of {}", data.len());
    }
    Ok(())
}

/// The certificates: a "public" CA and the server's certificate it signed,
/// and the interception CA that `imspector ca create` makes.
struct Pki {
    public_ca: PathBuf,
    public_dir: PathBuf,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    ours: PathBuf,
    ours_key: PathBuf,
    leaves: PathBuf,
}

impl Pki {
    fn make(dir: &Path, imspector: &Path) -> anyhow::Result<Self> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bench public CA");
        let ca = params.self_signed(&ca_key)?;
        let key = rcgen::KeyPair::generate()?;
        let names = APPS.iter().map(|app| app.server_name().to_string());
        let cert = rcgen::CertificateParams::new(names.collect::<Vec<_>>())?
            .signed_by(&key, &ca, &ca_key)?;
        let public_dir = dir.join("public");
        std::fs::create_dir_all(&public_dir)?;
        let public_ca = public_dir.join("ca.pem");
        std::fs::write(&public_ca, ca.pem())?;
        let ours_dir = dir.join("ours");
        let out = std::process::Command::new(imspector)
            .args(["ca", "create"])
            .arg(&ours_dir)
            .output()?;
        if !out.status.success() {
            bail!("imspector ca create: {out:?}");
        }
        Ok(Pki {
            public_ca,
            public_dir,
            server_chain: vec![cert.der().clone()],
            server_key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?,
            ours: ours_dir.join("imspector-ca.pem"),
            ours_key: ours_dir.join("imspector-ca.key"),
            leaves: dir.join("leaves"),
        })
    }

    fn intercept_config(&self) -> String {
        format!(
            "ssl=on\nssl_ca_cert={}\nssl_ca_key={}\nssl_cert_dir={}\nssl_verify_dir={}\n",
            self.ours.display(),
            self.ours_key.display(),
            self.leaves.display(),
            self.public_dir.display()
        )
    }

    /// Clients trust both CAs: the direct and untouched ways see the server's
    /// certificate, the intercepted way our leaf.
    fn client_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for file in [&self.public_ca, &self.ours] {
            roots.add(CertificateDer::from_pem_file(file)?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every handshake a full one, on every way.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }
}

/// The TLS servers, one per app: each greets as its app does, counts the
/// plaintext of each session and answers the count when the client closes.
/// A thread per connection.
fn start_servers(pki: &Pki) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())?,
    );
    APPS.iter()
        .map(|&app| {
            let listener = TcpListener::bind((SINK_IP, app.port()))?;
            let config = config.clone();
            Ok(std::thread::spawn(move || {
                for sock in listener.incoming().flatten() {
                    let config = config.clone();
                    std::thread::spawn(move || {
                        let _ = serve_one(config, sock, app);
                    });
                }
            }))
        })
        .collect()
}

fn serve_one(config: Arc<rustls::ServerConfig>, sock: TcpStream, app: App) -> anyhow::Result<()> {
    sock.set_nodelay(true)?;
    let conn = rustls::ServerConnection::new(config)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(app.greeting())?;
    tls.flush()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut count = 0usize;
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => count += n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
    }
    tls.write_all(app.answer(count).as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()?;
    let _ = tls.sock.shutdown(Shutdown::Write);
    Ok(())
}
