//! Scripted peers, for protocols whose real clients and servers cannot run
//! here: the test plays both ends itself. The server's socket listens in the
//! server namespace, the client's connects from the client namespace to the
//! server's address, the gateway's REDIRECT hands it to the daemon. Both ends
//! decode what they receive with strict parsers written for the test, so a
//! frame the proxy rewrote with a wrong length field fails the test.
//!
//! [`ScriptedFilterRig`] runs the filter scenarios of
//! `imspector::filter::testing` through such a pair.

pub mod msn;
pub mod msn_gateway;
pub mod yahoo;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use anyhow::{bail, Context};
use imspector::filter::testing::{FilterRig, Outcome};

use crate::replay::Sender;
use crate::wait::{self, DEADLINE};
use crate::{Imspector, Rig};

/// The port the daemon listens on behind the REDIRECT.
const PROXY_PORT: u16 = 16667;

/// What a strict decoder found in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A chat message; `from` names the sender where the frame does (at the client).
    Text { from: Option<String>, text: String },
    /// At the server: the marker the client sends after each message; at the
    /// client: the server's answer to it. Both carry the marker's id.
    Marker(String),
    /// Anything else the protocol carries, described for assertions.
    Other(String),
}

/// One decoded frame: its bytes as received, and their meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub raw: Vec<u8>,
    pub item: Item,
}

/// A strict decoder: `Ok(None)` until a whole frame is in `buf`, then its
/// length and meaning; `Err` for anything malformed.
pub type Decoded = Result<Option<(usize, Item)>, String>;

/// The protocol-specific half of a scripted session.
pub trait ScriptedProtocol {
    /// The protocol's directory in the file log (`MSN`).
    fn log_name(&self) -> &'static str;
    /// The server port the client connects to.
    fn port(&self) -> u16;
    /// The configuration lines that enable the protocol.
    fn config(&self) -> String;
    /// The local and the remote user's ids as logged (lower case).
    fn ids(&self) -> (String, String);
    /// The login, as the bytes each side sends in turn; each side checks it
    /// receives the other's unchanged.
    fn login(&mut self) -> Vec<(Sender, Vec<u8>)>;
    /// The local client's frame carrying a message to the remote user.
    fn message(&mut self, text: &str) -> Vec<u8>;
    /// A frame the client sends after each message that is no chat event;
    /// the server decodes it as [`Item::Marker`].
    fn marker(&mut self) -> Vec<u8>;
    /// The server's answer to a marker (decoded by the client as the same
    /// [`Item::Marker`]).
    fn marker_reply(&mut self, id: &str) -> Vec<u8>;
    /// Strictly decode what the server received from the client.
    fn decode_at_server(&self, buf: &[u8]) -> Decoded;
    /// Strictly decode what the client received from the server (and the proxy).
    fn decode_at_client(&self, buf: &[u8]) -> Decoded;
}

/// One end of the connection with what it has received but not yet read,
/// and everything it sent and received (for an independent decoder).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    name: &'static str,
    sent: Vec<u8>,
    received: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream, name: &'static str) -> anyhow::Result<Self> {
        stream.set_read_timeout(Some(DEADLINE))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            name,
            sent: Vec::new(),
            received: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.sent.extend_from_slice(bytes);
        self.stream
            .write_all(bytes)
            .with_context(|| format!("{} sending", self.name))
    }

    /// Every byte this end sent so far.
    pub fn sent(&self) -> &[u8] {
        &self.sent
    }

    /// Every byte this end received so far, read or not.
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = loop {
            match self.stream.read(&mut chunk) {
                // A signal to the test process is no end of the data.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => {
                    break read.with_context(|| {
                        format!("{} reading (has {:?})", self.name, self.lossy())
                    })?
                }
            }
        };
        if n == 0 {
            bail!(
                "{} saw the connection close (has {:?})",
                self.name,
                self.lossy()
            );
        }
        self.buf.extend_from_slice(&chunk[..n]);
        self.received.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Receive exactly `want` next.
    pub fn expect(&mut self, want: &[u8]) -> anyhow::Result<()> {
        while self.buf.len() < want.len() && self.buf.starts_with(&want[..self.buf.len()]) {
            self.fill()?;
        }
        if !self.buf.starts_with(want) {
            bail!(
                "{} expected {:?}, got {:?}",
                self.name,
                String::from_utf8_lossy(want),
                self.lossy()
            );
        }
        self.buf.drain(..want.len());
        Ok(())
    }

    /// The next frame, decoded by `decode`.
    pub fn next(&mut self, decode: impl Fn(&[u8]) -> Decoded) -> anyhow::Result<Frame> {
        loop {
            match decode(&self.buf) {
                Ok(Some((len, item))) => {
                    let raw = self.buf.drain(..len).collect();
                    return Ok(Frame { raw, item });
                }
                Ok(None) => self.fill()?,
                Err(e) => bail!(
                    "{} got a malformed frame: {e}; bytes: {:?}",
                    self.name,
                    self.lossy()
                ),
            }
        }
    }
}

/// A scripted client and server talking through the daemon in the rig.
pub struct Scripted<P: ScriptedProtocol> {
    pub protocol: P,
    pub client: Conn,
    pub server: Conn,
    pub ims: Imspector,
    pub rig: Rig,
}

impl<P: ScriptedProtocol> Scripted<P> {
    /// Start the daemon with the protocol's configuration and `config`,
    /// connect the client through it to the server and play the login.
    pub fn start(protocol: P, config: &str) -> anyhow::Result<Self> {
        Self::start_in(Rig::new()?, protocol, config)
    }

    /// Like [`Scripted::start`], in a rig the caller prepared (to capture
    /// its traffic, say).
    pub fn start_in(rig: Rig, protocol: P, config: &str) -> anyhow::Result<Self> {
        let port = protocol.port();
        rig.redirect(&[port], PROXY_PORT)?;
        let ims = Imspector::start(
            &rig.gateway,
            &rig.subdir("ims")?,
            &format!("{}{config}", protocol.config()),
        )?;
        let listener = rig
            .server
            .run(move || TcpListener::bind(("0.0.0.0", port)))??;
        let server_ip = rig.server_ip;
        let client = rig
            .client
            .run(move || TcpStream::connect((server_ip, port)))??;
        listener.set_nonblocking(true)?;
        let (server, _) = wait::until("the proxied connection at the server", || {
            listener.accept().ok()
        })?;
        server.set_nonblocking(false)?;
        let mut scripted = Scripted {
            client: Conn::new(client, "the client")?,
            server: Conn::new(server, "the server")?,
            protocol,
            ims,
            rig,
        };
        for (sender, bytes) in scripted.protocol.login() {
            let (from, to) = scripted.ends(sender);
            from.send(&bytes)?;
            to.expect(&bytes)?;
        }
        Ok(scripted)
    }

    fn ends(&mut self, sender: Sender) -> (&mut Conn, &mut Conn) {
        match sender {
            Sender::Client => (&mut self.client, &mut self.server),
            Sender::Server => (&mut self.server, &mut self.client),
        }
    }

    /// The next frame the server received, strictly decoded.
    pub fn server_frame(&mut self) -> anyhow::Result<Frame> {
        let protocol = &self.protocol;
        self.server.next(|b| protocol.decode_at_server(b))
    }

    /// The next frame the client received, strictly decoded.
    pub fn client_frame(&mut self) -> anyhow::Result<Frame> {
        let protocol = &self.protocol;
        self.client.next(|b| protocol.decode_at_client(b))
    }

    /// The client sends the marker, the server answers it once it arrives:
    /// returns the frames each side received before the marker (the server's
    /// first, then the client's).
    pub fn sync(&mut self) -> anyhow::Result<(Vec<Frame>, Vec<Frame>)> {
        let marker = self.protocol.marker();
        self.client.send(&marker)?;
        let mut at_server = Vec::new();
        let id = loop {
            let frame = self.server_frame()?;
            match frame.item {
                Item::Marker(id) => break id,
                _ => at_server.push(frame),
            }
        };
        let reply = self.protocol.marker_reply(&id);
        self.server.send(&reply)?;
        let mut at_client = Vec::new();
        loop {
            let frame = self.client_frame()?;
            match &frame.item {
                Item::Marker(got) if *got == id => break,
                _ => at_client.push(frame),
            }
        }
        Ok((at_server, at_client))
    }
}

/// The filter scenarios through a scripted session: the local user sends,
/// the remote end reports what it decoded.
pub struct ScriptedFilterRig<P: ScriptedProtocol> {
    pub peers: Scripted<P>,
    /// Messages sent so far, so each `send` finds its own log line.
    sent: usize,
}

impl<P: ScriptedProtocol> ScriptedFilterRig<P> {
    pub fn start(protocol: P) -> anyhow::Result<Self> {
        Ok(Self::with_peers(Scripted::start(protocol, "")?))
    }

    /// The scenarios through peers already started (with no messages sent yet).
    pub fn with_peers(peers: Scripted<P>) -> Self {
        ScriptedFilterRig { peers, sent: 0 }
    }

    fn outcome(&mut self, text: &str) -> anyhow::Result<Outcome> {
        let message = self.peers.protocol.message(text);
        self.peers.client.send(&message)?;
        let (at_server, at_client) = self.peers.sync()?;
        let (local, remote) = self.peers.protocol.ids();
        let mut delivered = Vec::new();
        for frame in at_server {
            match frame.item {
                Item::Text { text, .. } => delivered.push(text),
                other => bail!("the server got {other:?} besides the message"),
            }
        }
        if delivered.len() > 1 {
            bail!("the server got several messages: {delivered:?}");
        }
        let mut notices = Vec::new();
        for frame in at_client {
            match frame.item {
                Item::Text {
                    from: Some(from),
                    text,
                } if from == remote => notices.push(text),
                other => bail!("the client got {other:?}, not a notice in the chat with {remote}"),
            }
        }
        self.sent += 1;
        let log_name = self.peers.protocol.log_name();
        let logged = self
            .peers
            .ims
            .wait_logged(log_name, &local, &remote, self.sent)?;
        Ok(Outcome {
            delivered: delivered.pop(),
            notices,
            logged,
        })
    }
}

impl<P: ScriptedProtocol> FilterRig for ScriptedFilterRig<P> {
    fn ids(&self) -> (String, String) {
        self.peers.protocol.ids()
    }

    fn configure(&mut self, conf: &str) -> Result<(), String> {
        let config = format!("{}{conf}", self.peers.protocol.config());
        self.peers.ims.reload(&config).map_err(|e| e.to_string())
    }

    fn send(&mut self, text: &str) -> Result<Outcome, String> {
        self.outcome(text).map_err(|e| format!("{e:#}"))
    }
}
