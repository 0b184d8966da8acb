//! The TLS workloads: IRC over TLS on port 6697 to a rustls server (the sink
//! for TLS), through imspector intercepting (`ssl=on`, a leaf per name signed
//! by a CA made with `imspector ca create`), through imspector relaying TLS
//! untouched (`ssl` off), and direct, in one run:
//! - handshakes/s: each connection does a full handshake, sends one line and
//!   closes;
//! - messages/s: IRC PRIVMSG lines over one TLS session per connection; with
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
use crate::load::{connect, EventCount};
use crate::measure::summarize;
use crate::targets::{Kind, LogTo, Target};

/// IRC over TLS, as clients use it.
const TLS_PORT: u16 = 6697;
/// The name the server's certificate is for, and the client's SNI.
const SERVER_NAME: &str = "irc.bench";

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

pub fn run(imspector: &Path, plan: &TlsPlan) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("imspector-bench-tls")
        .tempdir()?;
    let pki = Pki::make(dir.path(), imspector)?;
    let _server = start_server(&pki)?;
    let client = Arc::new(pki.client_config()?);
    let ways = [Way::Direct, Way::Untouched, Way::Intercepted];
    let mut handshakes: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let mut messages: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let block = Arc::new(synthetic::irc(IrcTraffic::Chat, 1 << 20, 9));
    let lines_per_block = block.iter().filter(|&&b| b == b'\n').count() as u64;
    let per_run = lines_per_block * (plan.chat_repeats * plan.connections) as u64;
    for _ in 0..plan.runs {
        for (i, &way) in ways.iter().enumerate() {
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
            // Warm up: the first connection makes the leaf for the name.
            session(&client, source, b"PING :warm\r\n")?;
            let start = Instant::now();
            let threads: Vec<_> = (0..plan.connections)
                .map(|_| {
                    let client = client.clone();
                    let n = plan.handshakes;
                    std::thread::spawn(move || -> anyhow::Result<()> {
                        for _ in 0..n {
                            session(&client, source, b"PRIVMSG bob :one line\r\n")?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("handshake thread")?;
            }
            let total = (plan.connections * plan.handshakes) as f64;
            handshakes[i].push(total / start.elapsed().as_secs_f64());

            let mut logged = EventCount::default();
            let store = target.as_ref().and_then(|t| t.events.as_ref());
            if let Some(store) = store {
                logged.update(store)?;
            }
            let before = logged.events;
            let start = Instant::now();
            let threads: Vec<_> = (0..plan.connections)
                .map(|_| {
                    let (client, block) = (client.clone(), block.clone());
                    let repeat = plan.chat_repeats;
                    std::thread::spawn(move || -> anyhow::Result<()> {
                        let mut data = Vec::with_capacity(block.len() * repeat);
                        for _ in 0..repeat {
                            data.extend_from_slice(&block);
                        }
                        session(&client, source, &data)
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("chat thread")?;
            }
            if let (Way::Intercepted, Some(store)) = (way, store) {
                // Done once every message is in the log.
                logged.wait_for(store, before + per_run)?;
            }
            messages[i].push(per_run as f64 / start.elapsed().as_secs_f64());
        }
    }
    println!("## TLS: IRC over TLS on port {TLS_PORT}, intercepted and not\n");
    println!(
        "{} connections, {} runs. Handshakes: {} per connection per run, each a full TLS 1.3 \
         handshake (ECDSA P-256, no resumption), one IRC line and a close. Messages: {per_run} \
         IRC PRIVMSG lines per run over one TLS session per connection. Intercepted: two \
         handshakes per connection (client side with a leaf from the CA, server side verified), \
         every line decrypted, parsed, logged to files and encrypted again.\n",
        plan.connections, plan.runs, plan.handshakes
    );
    println!("| way | handshakes/s (median) | range | messages/s (median) | range |");
    println!("|---|---|---|---|---|");
    for (i, way) in ways.iter().enumerate() {
        let (Some(h), Some(m)) = (summarize(&handshakes[i]), summarize(&messages[i])) else {
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
    Ok(())
}

/// One TLS session to the server from `source`: send `data`, close, and
/// check that the server counted every byte.
fn session(
    config: &Arc<rustls::ClientConfig>,
    source: std::net::Ipv4Addr,
    data: &[u8],
) -> anyhow::Result<()> {
    let to = SocketAddr::new(IpAddr::V4(SINK_IP), TLS_PORT);
    let sock = connect(source, to)?;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from(SERVER_NAME)?;
    let conn = rustls::ClientConnection::new(config.clone(), name)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
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
        .trim()
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
        let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?
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

/// The TLS server: counts the plaintext of each session and answers the
/// count when the client closes. A thread per connection.
fn start_server(pki: &Pki) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())?,
    );
    let listener = TcpListener::bind((SINK_IP, TLS_PORT))?;
    Ok(std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = serve_one(config, sock);
            });
        }
    }))
}

fn serve_one(config: Arc<rustls::ServerConfig>, sock: TcpStream) -> anyhow::Result<()> {
    sock.set_nodelay(true)?;
    let conn = rustls::ServerConnection::new(config)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
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
    tls.write_all(format!("{count}\n").as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()?;
    let _ = tls.sock.shutdown(Shutdown::Write);
    Ok(())
}
