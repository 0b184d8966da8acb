//! An OSCAR server that speaks just enough for libfaim (BarnOwl) and our
//! scripted client: the MD5 login on one port, a BOS redirect with a cookie
//! to another, the BOS start-up exchanges, and ICBM relay (messages, typing)
//! between the users signed on.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use md5::{Digest, Md5};

use super::wire::{self, FlapWriter};
use super::{BOS_PORT, CHAT_PORT, LOGIN_PORT};
use crate::netns::Netns;

/// What libfaim appends to the key and password before hashing.
const AIM_MD5_STRING: &[u8] = b"AOL Instant Messenger (SM)";
const LOGIN_KEY: &str = "1234567890";

type Writer = Arc<Mutex<FlapWriter<TcpStream>>>;

#[derive(Clone, Copy)]
enum Service {
    Login,
    Bos,
    Chat,
}

#[derive(Default)]
struct State {
    /// The address the login reply and service redirects name.
    host: Option<Ipv4Addr>,
    next_cookie: u32,
    /// Chat cookies handed out by 01/05, to the user and the room.
    chat_cookies: HashMap<Vec<u8>, (String, String)>,
    /// The members of each room, by room name.
    rooms: HashMap<String, Vec<(String, Writer)>>,
    /// Screen name (normalised) to password.
    accounts: HashMap<String, String>,
    /// Cookies handed out at login, to the screen name as typed.
    cookies: HashMap<Vec<u8>, String>,
    /// The BOS connections of the users signed on, by normalised name.
    online: HashMap<String, Writer>,
    journal: Vec<String>,
}

type Shared = Arc<Mutex<State>>;

pub struct OscarServer {
    state: Shared,
    stop: Arc<AtomicBool>,
}

/// Lower case without spaces, as AIM compares screen names.
pub fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != ' ')
        .flat_map(char::to_lowercase)
        .collect()
}

impl OscarServer {
    /// Listen in `ns` on the login and BOS ports; the login reply names
    /// `bos_host`:[`BOS_PORT`].
    pub fn start(
        ns: &Netns,
        bos_host: Ipv4Addr,
        accounts: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let state = Shared::default();
        for (name, password) in accounts {
            let mut s = state.lock().expect("server state");
            s.accounts.insert(normalise(name), password.to_string());
        }
        state.lock().expect("server state").host = Some(bos_host);
        let stop = Arc::new(AtomicBool::new(false));
        for (port, service) in [
            (LOGIN_PORT, Service::Login),
            (BOS_PORT, Service::Bos),
            (CHAT_PORT, Service::Chat),
        ] {
            let listener = ns.run(move || TcpListener::bind(("0.0.0.0", port)))??;
            listener.set_nonblocking(true)?;
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let result = match service {
                            Service::Login => serve_login(stream, &state),
                            Service::Bos => serve_bos(stream, &state),
                            Service::Chat => serve_chat(stream, &state),
                        };
                        if let Err(e) = result {
                            note(&state, format!("connection ended: {e:#}"));
                        }
                    });
                }
            });
        }
        Ok(OscarServer { state, stop })
    }

    /// What the server did, one entry a line.
    pub fn journal(&self) -> String {
        self.state.lock().expect("server state").journal.join("\n")
    }

    /// Whether `name` is signed on to BOS.
    pub fn is_online(&self, name: &str) -> bool {
        let state = self.state.lock().expect("server state");
        state.online.contains_key(&normalise(name))
    }
}

impl Drop for OscarServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn note(state: &Shared, line: String) {
    state.lock().expect("server state").journal.push(line);
}

/// Both hashes libfaim may send: of the password, or of its MD5.
fn digest_matches(password: &str, digest: &[u8]) -> bool {
    let hash = |middle: &[u8]| {
        let mut h = Md5::new();
        h.update(LOGIN_KEY.as_bytes());
        h.update(middle);
        h.update(AIM_MD5_STRING);
        h.finalize().to_vec()
    };
    let inner = Md5::digest(password.as_bytes());
    digest == hash(&inner) || digest == hash(password.as_bytes())
}

/// A new cookie (long, as AOL's were) and the host to send clients to.
fn new_cookie(state: &Shared, kind: &str) -> (Vec<u8>, Ipv4Addr) {
    let mut s = state.lock().expect("server state");
    s.next_cookie += 1;
    let cookie = format!("{kind}-{:04}-{}", s.next_cookie, "x".repeat(240)).into_bytes();
    (cookie, s.host.expect("server host"))
}

fn serve_login(stream: TcpStream, state: &Shared) -> anyhow::Result<()> {
    let mut reader = stream.try_clone()?;
    let mut out = FlapWriter::new(stream);
    out.flap(wire::SIGN_ON, &[0, 0, 0, 1])?;
    loop {
        let flap = wire::read_flap(&mut reader)?;
        if flap.channel != wire::SNAC {
            continue;
        }
        let (family, subtype, body) = flap.snac()?;
        match (family, subtype) {
            (0x17, 0x06) => {
                let mut key = (LOGIN_KEY.len() as u16).to_be_bytes().to_vec();
                key.extend_from_slice(LOGIN_KEY.as_bytes());
                out.snac(0x17, 0x07, &key)?;
            }
            (0x17, 0x02) => {
                let tlvs = wire::tlvs(body)?;
                let name = String::from_utf8_lossy(wire::find(&tlvs, 1).context("no screen name")?)
                    .into_owned();
                let digest = wire::find(&tlvs, 0x25).context("no MD5 digest")?;
                let password = state
                    .lock()
                    .expect("server state")
                    .accounts
                    .get(&normalise(&name))
                    .cloned();
                let mut reply = wire::tlv(1, name.as_bytes());
                if !password.is_some_and(|p| digest_matches(&p, digest)) {
                    reply.extend(wire::tlv(8, &[0, 5]));
                    out.snac(0x17, 0x03, &reply)?;
                    note(state, format!("{name}: wrong password"));
                    return Ok(());
                }
                let (cookie, host) = new_cookie(state, "bos");
                let bos_address = format!("{host}:{BOS_PORT}");
                state
                    .lock()
                    .expect("server state")
                    .cookies
                    .insert(cookie.clone(), name.clone());
                reply.extend(wire::tlv(5, bos_address.as_bytes()));
                reply.extend(wire::tlv(6, &cookie));
                out.snac(0x17, 0x03, &reply)?;
                note(state, format!("{name} logged in, sent to {bos_address}"));
            }
            _ => {}
        }
    }
}

/// The families our BOS serves: generic, locate, buddy, ICBM, BOS, SSI.
const FAMILIES: [u16; 6] = [0x01, 0x02, 0x03, 0x04, 0x09, 0x13];

fn rate_info() -> Vec<u8> {
    // One class, generous limits, no member SNACs; the 5-byte tail of
    // version 3 and later.
    let mut body = vec![0, 1, 0, 1];
    for value in [80u32, 2500, 2000, 1500, 800, 6000, 6000, 0] {
        body.extend_from_slice(&value.to_be_bytes());
    }
    body.push(0);
    body.extend_from_slice(&[0, 1, 0, 0]);
    body
}

/// The user-info block of `name`: screen name, warning level, one TLV.
fn user_info(name: &str) -> Vec<u8> {
    let mut out = vec![name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&[0, 0, 0, 1]);
    out.extend(wire::tlv(1, &[0, 0x10]));
    out
}

fn serve_bos(stream: TcpStream, state: &Shared) -> anyhow::Result<()> {
    let mut reader = stream.try_clone()?;
    let out: Writer = Arc::new(Mutex::new(FlapWriter::new(stream)));
    out.lock()
        .expect("writer")
        .flap(wire::SIGN_ON, &[0, 0, 0, 1])?;
    let sign_on = wire::read_flap(&mut reader)?;
    if sign_on.channel != wire::SIGN_ON {
        bail!("BOS connection did not start with a sign-on");
    }
    let tlvs = wire::tlvs(sign_on.data.get(4..).context("sign-on version")?)?;
    let cookie = wire::find(&tlvs, 6).context("no cookie")?;
    let name = state
        .lock()
        .expect("server state")
        .cookies
        .remove(cookie)
        .context("unknown cookie")?;
    let key = normalise(&name);
    state
        .lock()
        .expect("server state")
        .online
        .insert(key.clone(), out.clone());
    note(state, format!("{name} signed on to BOS"));
    let families: Vec<u8> = FAMILIES.iter().flat_map(|f| f.to_be_bytes()).collect();
    out.lock().expect("writer").snac(0x01, 0x03, &families)?;
    let result = bos_loop(&mut reader, &out, state, &name);
    state.lock().expect("server state").online.remove(&key);
    result
}

fn bos_loop(
    reader: &mut TcpStream,
    out: &Writer,
    state: &Shared,
    name: &str,
) -> anyhow::Result<()> {
    let reply = |family: u16, subtype: u16, body: &[u8]| -> anyhow::Result<()> {
        Ok(out.lock().expect("writer").snac(family, subtype, body)?)
    };
    loop {
        let flap = wire::read_flap(reader)?;
        if flap.channel != wire::SNAC {
            continue;
        }
        let (family, subtype, body) = flap.snac()?;
        match (family, subtype) {
            (0x01, 0x17) => reply(0x01, 0x18, body)?,
            (0x01, 0x06) => reply(0x01, 0x07, &rate_info())?,
            (0x01, 0x0e) => reply(0x01, 0x0f, &user_info(name))?,
            (0x01, 0x02) => note(state, format!("{name} is ready")),
            (0x02, 0x02) => reply(0x02, 0x03, &wire::tlv(1, &[0x04, 0x00]))?,
            (0x03, 0x02) => {
                let mut rights = wire::tlv(1, &[0, 100]);
                rights.extend(wire::tlv(2, &[0, 100]));
                reply(0x03, 0x03, &rights)?;
            }
            (0x04, 0x04) => {
                let mut params = vec![0, 0, 0, 0, 0, 3];
                params.extend_from_slice(&[0x1f, 0x40, 0x03, 0xe7, 0x03, 0xe7, 0, 0, 0, 0]);
                reply(0x04, 0x05, &params)?;
            }
            (0x09, 0x02) => {
                let mut rights = wire::tlv(1, &[0, 100]);
                rights.extend(wire::tlv(2, &[0, 100]));
                reply(0x09, 0x03, &rights)?;
            }
            (0x13, 0x02) => reply(0x13, 0x03, &[])?,
            (0x13, 0x04 | 0x05) => reply(0x13, 0x06, &[0, 0, 0, 0, 0, 0, 0])?,
            // A malformed ICBM is noted, as a server refusing it would.
            (0x04, 0x06) => {
                if let Err(e) = relay_message(body, state, name) {
                    note(state, format!("malformed ICBM from {name}: {e:#}"));
                }
            }
            (0x04, 0x14) => relay_typing(body, state, name)?,
            (0x01, 0x04) => {
                if let Some(redirect) = chat_redirect(body, state, name)? {
                    reply(0x01, 0x05, &redirect)?;
                }
            }
            _ => {}
        }
    }
}

fn writer_of(state: &Shared, to: &[u8]) -> Option<Writer> {
    let to = normalise(&String::from_utf8_lossy(to));
    state.lock().expect("server state").online.get(&to).cloned()
}

/// 04/06 from `from` becomes 04/07 to its recipient: the same cookie,
/// channel and message TLVs, with the sender's user info in front.
fn relay_message(body: &[u8], state: &Shared, from: &str) -> anyhow::Result<()> {
    let head = body.get(..10).context("ICBM header")?;
    let (to, tlvs) = wire::string8(&body[10..])?;
    let list = wire::tlvs(tlvs)?;
    let channel = wire::be16(head, 8)?;
    let Some(writer) = writer_of(state, to) else {
        note(
            state,
            format!(
                "{from} wrote to {} who is offline",
                String::from_utf8_lossy(to)
            ),
        );
        return Ok(());
    };
    let mut out = head.to_vec();
    out.extend(user_info(from));
    for (ty, value) in &list {
        // The server keeps the delivery options to itself.
        if matches!(ty, 2 | 5) {
            out.extend(wire::tlv(*ty, value));
        }
    }
    writer.lock().expect("writer").snac(0x04, 0x07, &out)?;
    note(
        state,
        format!(
            "relayed channel {channel} from {from} to {}",
            String::from_utf8_lossy(to)
        ),
    );
    Ok(())
}

fn relay_typing(body: &[u8], state: &Shared, from: &str) -> anyhow::Result<()> {
    let head = body.get(..10).context("MTN header")?;
    let (to, rest) = wire::string8(&body[10..])?;
    let Some(writer) = writer_of(state, to) else {
        return Ok(());
    };
    let mut out = head.to_vec();
    out.push(from.len() as u8);
    out.extend_from_slice(from.as_bytes());
    out.extend_from_slice(rest);
    writer.lock().expect("writer").snac(0x04, 0x14, &out)?;
    Ok(())
}

/// 01/04 for family 0x0E (exchange, room name as cookie, instance in TLV 1):
/// the 01/05 that sends the client to the chat service with a cookie.
fn chat_redirect(body: &[u8], state: &Shared, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    if wire::be16(body, 0)? != 0x0e {
        return Ok(None);
    }
    let tlvs = wire::tlvs(&body[2..])?;
    let room = wire::find(&tlvs, 1).context("no room in the service request")?;
    let (room, _) = wire::string8(room.get(2..).context("room exchange")?)?;
    let room = String::from_utf8(room.to_vec())?;
    let (cookie, host) = new_cookie(state, "chat");
    state
        .lock()
        .expect("server state")
        .chat_cookies
        .insert(cookie.clone(), (name.to_string(), room.clone()));
    let mut redirect = wire::tlv(0x0d, &[0, 0x0e]);
    redirect.extend(wire::tlv(5, format!("{host}:{CHAT_PORT}").as_bytes()));
    redirect.extend(wire::tlv(6, &cookie));
    note(state, format!("{name} sent to room {room}"));
    Ok(Some(redirect))
}

/// A chat-room connection: the cookie from 01/05, the room's info (0E/02),
/// then every line (0E/05) goes to the other members as 0E/06.
fn serve_chat(stream: TcpStream, state: &Shared) -> anyhow::Result<()> {
    let mut reader = stream.try_clone()?;
    let out: Writer = Arc::new(Mutex::new(FlapWriter::new(stream)));
    out.lock()
        .expect("writer")
        .flap(wire::SIGN_ON, &[0, 0, 0, 1])?;
    let sign_on = wire::read_flap(&mut reader)?;
    let tlvs = wire::tlvs(sign_on.data.get(4..).context("sign-on version")?)?;
    let cookie = wire::find(&tlvs, 6).context("no cookie")?;
    let (name, room) = state
        .lock()
        .expect("server state")
        .chat_cookies
        .remove(cookie)
        .context("unknown chat cookie")?;
    out.lock()
        .expect("writer")
        .snac(0x01, 0x03, &[0, 0x01, 0, 0x0e])?;
    let mut info = vec![0, 4];
    let fq = format!("!aol://2719:10-4-{room}");
    info.push(fq.len() as u8);
    info.extend_from_slice(fq.as_bytes());
    info.extend_from_slice(&[0, 0, 2, 0, 1]);
    info.extend(wire::tlv(0xd3, room.as_bytes()));
    out.lock().expect("writer").snac(0x0e, 0x02, &info)?;
    state
        .lock()
        .expect("server state")
        .rooms
        .entry(room.clone())
        .or_default()
        .push((name.clone(), out.clone()));
    note(state, format!("{name} joined {room}"));
    loop {
        let flap = wire::read_flap(&mut reader)?;
        if flap.channel != wire::SNAC {
            continue;
        }
        let (family, subtype, body) = flap.snac()?;
        if (family, subtype) != (0x0e, 0x05) {
            continue;
        }
        let tlvs = wire::tlvs(body.get(10..).context("chat message header")?)?;
        let message = wire::find(&tlvs, 5).context("chat message without TLV 5")?;
        let mut line = body[..10].to_vec();
        line.extend(wire::tlv(3, &user_info(&name)));
        line.extend(wire::tlv(1, b""));
        line.extend(wire::tlv(5, message));
        let members = state.lock().expect("server state").rooms[&room].clone();
        for (member, writer) in members {
            if member != name {
                writer.lock().expect("writer").snac(0x0e, 0x06, &line)?;
            }
        }
        note(state, format!("{name} said a line in {room}"));
    }
}
