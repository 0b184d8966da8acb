//! A scripted OSCAR client: the MD5 login, the BOS sign-on with the cookie,
//! then messages, typing notifications and file offers. A reader thread
//! strictly decodes what arrives, so a FLAP the proxy re-encoded wrongly fails
//! the test.

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use md5::{Digest, Md5};

use super::wire::{self, Charset, FlapWriter};
use super::{server::normalise, LOGIN_PORT};
use crate::netns::Netns;
use crate::wait;

/// What the client received, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Text {
        from: String,
        text: String,
    },
    Typing {
        from: String,
        state: u16,
    },
    /// 01/0F, the answer to [`OscarClient::ping`].
    SelfInfo,
    /// 01/05: where a service (a chat room) is, and the cookie for it.
    Redirect {
        address: String,
        cookie: Vec<u8>,
    },
    Other(u16, u16),
}

pub struct OscarClient {
    pub name: String,
    out: FlapWriter<TcpStream>,
    received: Arc<Mutex<Vec<Received>>>,
    /// Why the reader stopped, if it did.
    failure: Arc<Mutex<Option<String>>>,
    cookies: u32,
}

fn snac_of(flap: &wire::Flap) -> anyhow::Result<(u16, u16, Vec<u8>)> {
    let (family, subtype, body) = flap.snac()?;
    Ok((family, subtype, body.to_vec()))
}

/// The next SNAC of `family`/`subtype`, skipping others.
fn expect_snac(reader: &mut TcpStream, family: u16, subtype: u16) -> anyhow::Result<Vec<u8>> {
    loop {
        let flap = wire::read_flap(reader)?;
        if flap.channel != wire::SNAC {
            continue;
        }
        let (f, s, body) = snac_of(&flap)?;
        if (f, s) == (family, subtype) {
            return Ok(body);
        }
    }
}

impl OscarClient {
    /// Log `name` in from `ns` to the server at `server`, then sign on to
    /// the BOS address the login reply names.
    pub fn login(ns: &Netns, server: Ipv4Addr, name: &str, password: &str) -> anyhow::Result<Self> {
        let login = ns.run(move || TcpStream::connect((server, LOGIN_PORT)))??;
        login.set_read_timeout(Some(wait::DEADLINE))?;
        let mut reader = login.try_clone()?;
        let mut out = FlapWriter::new(login);
        out.flap(wire::SIGN_ON, &[0, 0, 0, 1])?;
        out.snac(0x17, 0x06, &wire::tlv(1, name.as_bytes()))?;
        let key = expect_snac(&mut reader, 0x17, 0x07)?;
        let key_len = usize::from(wire::be16(&key, 0)?);
        let key = key.get(2..2 + key_len).context("login key")?;
        let mut h = Md5::new();
        h.update(key);
        h.update(Md5::digest(password.as_bytes()));
        h.update(b"AOL Instant Messenger (SM)");
        let mut request = wire::tlv(1, name.as_bytes());
        request.extend(wire::tlv(0x25, &h.finalize()));
        request.extend(wire::tlv(0x4c, b""));
        out.snac(0x17, 0x02, &request)?;
        let reply = wire::tlvs(&expect_snac(&mut reader, 0x17, 0x03)?)?;
        if let Some(error) = wire::find(&reply, 8) {
            bail!("{name}: login refused with error {error:?}");
        }
        let bos = String::from_utf8(wire::find(&reply, 5).context("no BOS address")?.to_vec())?;
        let cookie = wire::find(&reply, 6).context("no cookie")?.to_vec();
        drop(out);

        let (host, port) = bos.rsplit_once(':').context("BOS address without a port")?;
        let (host, port): (Ipv4Addr, u16) = (host.parse()?, port.parse()?);
        let bos = ns.run(move || TcpStream::connect((host, port)))??;
        bos.set_read_timeout(Some(wait::DEADLINE))?;
        let mut reader = bos.try_clone()?;
        let mut out = FlapWriter::new(bos);
        let mut sign_on = vec![0, 0, 0, 1];
        sign_on.extend(wire::tlv(6, &cookie));
        out.flap(wire::SIGN_ON, &sign_on)?;
        expect_snac(&mut reader, 0x01, 0x03)?;
        out.snac(0x01, 0x02, &[])?;

        let (received, failure) = spawn_reader(reader)?;
        Ok(OscarClient {
            name: name.to_string(),
            out,
            received,
            failure,
            cookies: 0,
        })
    }

    fn icbm_head(&mut self, channel: u16, to: &str) -> Vec<u8> {
        self.cookies += 1;
        let mut body = format!("msg{:05}", self.cookies).into_bytes();
        body.extend_from_slice(&channel.to_be_bytes());
        body.push(to.len() as u8);
        body.extend_from_slice(to.as_bytes());
        body
    }

    /// Any SNAC, as it is (for malformed ones).
    pub fn send_snac(&mut self, family: u16, subtype: u16, body: &[u8]) -> anyhow::Result<()> {
        Ok(self.out.snac(family, subtype, body)?)
    }

    /// Raw bytes on the BOS connection.
    pub fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(self.out.stream.write_all(bytes)?)
    }

    /// The start of an ICBM 04/06 to `to` on `channel`: cookie, channel, name.
    pub fn icbm_start(&mut self, channel: u16, to: &str) -> Vec<u8> {
        self.icbm_head(channel, to)
    }

    /// A channel-1 message in `charset`.
    pub fn send(&mut self, to: &str, text: &str, charset: Charset) -> anyhow::Result<()> {
        let mut body = self.icbm_head(1, to);
        body.extend(wire::tlv(2, &wire::message_fragments(text, charset)));
        Ok(self.out.snac(0x04, 0x06, &body)?)
    }

    /// A typing notification: 2 begun, 1 typed, 0 finished.
    pub fn typing(&mut self, to: &str, state: u16) -> anyhow::Result<()> {
        let mut body = self.icbm_head(1, to);
        body.extend_from_slice(&state.to_be_bytes());
        Ok(self.out.snac(0x04, 0x14, &body)?)
    }

    /// A send-file proposal on channel 2.
    pub fn offer_file(&mut self, to: &str, name: &str, size: u32) -> anyhow::Result<()> {
        let mut proposal = vec![0, 0];
        proposal.extend_from_slice(b"filecook");
        proposal.extend_from_slice(&[
            0x09, 0x46, 0x13, 0x43, 0x4c, 0x7f, 0x11, 0xd1, 0x82, 0x22, 0x44, 0x45, 0x53, 0x54, 0,
            0,
        ]);
        let mut info = vec![0, 1, 0, 1];
        info.extend_from_slice(&size.to_be_bytes());
        info.extend_from_slice(name.as_bytes());
        info.push(0);
        proposal.extend(wire::tlv(0x000a, &[0, 1]));
        proposal.extend(wire::tlv(0x2711, &info));
        let mut body = self.icbm_head(2, to);
        body.extend(wire::tlv(5, &proposal));
        Ok(self.out.snac(0x04, 0x06, &body)?)
    }

    /// Ask for our own info: the answer comes after anything sent to us
    /// before it.
    pub fn ping(&mut self) -> anyhow::Result<()> {
        Ok(self.out.snac(0x01, 0x0e, &[])?)
    }

    /// Ask BOS for room `room` (exchange 4), then sign on to the chat service
    /// it names with the cookie it hands out, from `ns`.
    pub fn join(&mut self, ns: &Netns, room: &str) -> anyhow::Result<ChatRoom> {
        let mut request = vec![0, 4, room.len() as u8];
        request.extend_from_slice(room.as_bytes());
        request.extend_from_slice(&[0, 0]);
        let mut body = vec![0, 0x0e];
        body.extend(wire::tlv(1, &request));
        let redirects = |r: &Received| matches!(r, Received::Redirect { .. });
        let before = self.received().iter().filter(|r| redirects(r)).count();
        self.out.snac(0x01, 0x04, &body)?;
        self.wait_count("a chat redirect", before + 1, redirects)?;
        let Some(Received::Redirect { address, cookie }) =
            self.received().into_iter().filter(redirects).nth(before)
        else {
            bail!("no redirect");
        };
        let (host, port) = address
            .rsplit_once(':')
            .context("chat address without a port")?;
        let (host, port): (Ipv4Addr, u16) = (host.parse()?, port.parse()?);
        let conn = ns.run(move || TcpStream::connect((host, port)))??;
        conn.set_read_timeout(Some(wait::DEADLINE))?;
        let mut reader = conn.try_clone()?;
        let mut out = FlapWriter::new(conn);
        let mut sign_on = vec![0, 0, 0, 1];
        sign_on.extend(wire::tlv(6, &cookie));
        out.flap(wire::SIGN_ON, &sign_on)?;
        expect_snac(&mut reader, 0x01, 0x03)?;
        expect_snac(&mut reader, 0x0e, 0x02)?;
        let (received, _) = spawn_reader(reader)?;
        Ok(ChatRoom { out, received })
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }

    /// The texts received from `from` (normalised), in order.
    pub fn messages_from(&self, from: &str) -> Vec<String> {
        let from = normalise(from);
        self.received()
            .into_iter()
            .filter_map(|r| match r {
                Received::Text { from: f, text } if normalise(&f) == from => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Wait until `count` received items satisfy `what`.
    pub fn wait_count(
        &self,
        label: &str,
        count: usize,
        what: impl Fn(&Received) -> bool,
    ) -> anyhow::Result<()> {
        wait::until(
            &format!("{} to receive {label} ({count})", self.name),
            || {
                if let Some(failure) = self.failure.lock().expect("failure").clone() {
                    return Some(Err(anyhow::anyhow!(
                        "{}'s connection failed: {failure}",
                        self.name
                    )));
                }
                (self.received().iter().filter(|r| what(r)).count() >= count).then_some(Ok(()))
            },
        )?
    }
}

type Inbox = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<Option<String>>>);

/// A thread that decodes what `reader` gets, and why it stopped, if it did.
fn spawn_reader(mut reader: TcpStream) -> anyhow::Result<Inbox> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let failure = Arc::new(Mutex::new(None));
    let (into, failed) = (received.clone(), failure.clone());
    reader.set_read_timeout(None)?;
    std::thread::spawn(move || loop {
        match wire::read_flap(&mut reader).and_then(|f| decode(&f)) {
            Ok(Some(item)) => into.lock().expect("received").push(item),
            Ok(None) => {}
            Err(e) => {
                *failed.lock().expect("failure") = Some(format!("{e:#}"));
                return;
            }
        }
    });
    Ok((received, failure))
}

/// A connection to a chat room.
pub struct ChatRoom {
    out: FlapWriter<TcpStream>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl ChatRoom {
    /// Say `text` in the room, in UCS-2BE (`unicode-2-0`) unless it is ASCII.
    pub fn say(&mut self, text: &str) -> anyhow::Result<()> {
        let (label, bytes): (&[u8], Vec<u8>) = if text.is_ascii() {
            (b"us-ascii", text.as_bytes().to_vec())
        } else {
            (b"unicode-2-0", wire::ucs2_bytes(text))
        };
        let mut message = wire::tlv(1, &bytes);
        message.extend(wire::tlv(2, label));
        message.extend(wire::tlv(3, b"en"));
        let mut body = b"chatline".to_vec();
        body.extend_from_slice(&[0, 3]);
        body.extend(wire::tlv(1, b""));
        body.extend(wire::tlv(6, b""));
        body.extend(wire::tlv(5, &message));
        Ok(self.out.snac(0x0e, 0x05, &body)?)
    }

    /// The lines of `from` (normalised) so far.
    pub fn lines_from(&self, from: &str) -> Vec<String> {
        let from = normalise(from);
        self.received
            .lock()
            .expect("received")
            .iter()
            .filter_map(|r| match r {
                Received::Text { from: f, text } if normalise(f) == from => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The meaning of one FLAP from the server.
fn decode(flap: &wire::Flap) -> anyhow::Result<Option<Received>> {
    if flap.channel != wire::SNAC {
        return Ok(None);
    }
    let (family, subtype, body) = flap.snac()?;
    Ok(Some(match (family, subtype) {
        (0x04, 0x07) => {
            let (from, rest) = wire::string8(body.get(10..).context("ICBM header")?)?;
            let count = wire::be16(rest, 2)?;
            let mut rest = &rest[4..];
            for _ in 0..count {
                let len = usize::from(wire::be16(rest, 2)?);
                rest = rest.get(4 + len..).context("user info TLV past the end")?;
            }
            let tlvs = wire::tlvs(rest)?;
            let from = String::from_utf8(from.to_vec())?;
            match wire::find(&tlvs, 2) {
                Some(fragments) => Received::Text {
                    from,
                    text: wire::fragments_text(fragments)?,
                },
                None => Received::Other(family, subtype),
            }
        }
        (0x04, 0x14) => {
            let (from, rest) = wire::string8(body.get(10..).context("MTN header")?)?;
            Received::Typing {
                from: String::from_utf8(from.to_vec())?,
                state: wire::be16(rest, 0)?,
            }
        }
        (0x01, 0x0f) => Received::SelfInfo,
        (0x01, 0x05) => {
            let tlvs = wire::tlvs(body)?;
            Received::Redirect {
                address: String::from_utf8(wire::find(&tlvs, 5).context("no address")?.to_vec())?,
                cookie: wire::find(&tlvs, 6).context("no cookie")?.to_vec(),
            }
        }
        (0x0e, 0x06) => {
            let tlvs = wire::tlvs(body.get(10..).context("chat message header")?)?;
            let (from, _) = wire::string8(wire::find(&tlvs, 3).context("no sender")?)?;
            let message = wire::tlvs(wire::find(&tlvs, 5).context("no message")?)?;
            let text = wire::find(&message, 1).context("no text")?;
            let text = match wire::find(&message, 2) {
                Some(b"unicode-2-0") => wire::ucs2_text(text)?,
                _ => String::from_utf8(text.to_vec())?,
            };
            Received::Text {
                from: String::from_utf8(from.to_vec())?,
                text,
            }
        }
        _ => Received::Other(family, subtype),
    }))
}
