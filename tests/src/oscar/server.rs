//! An OSCAR server that speaks just enough for libfaim (BarnOwl) and our
//! scripted client: the MD5 login on one port, a BOS redirect with a cookie
//! to another, the BOS start-up exchanges, and ICBM relay (messages, typing)
//! between the users signed on.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use md5::{Digest, Md5};

use super::wire::{self, FlapWriter};
use super::{BOS_PORT, LOGIN_PORT};
use crate::netns::Netns;

/// What libfaim appends to the key and password before hashing.
const AIM_MD5_STRING: &[u8] = b"AOL Instant Messenger (SM)";
const LOGIN_KEY: &str = "1234567890";

type Writer = Arc<Mutex<FlapWriter<TcpStream>>>;

#[derive(Default)]
struct State {
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
        let stop = Arc::new(AtomicBool::new(false));
        let login = ns.run(|| TcpListener::bind(("0.0.0.0", LOGIN_PORT)))??;
        let bos = ns.run(|| TcpListener::bind(("0.0.0.0", BOS_PORT)))??;
        let bos_address = format!("{bos_host}:{BOS_PORT}");
        let cookies = Arc::new(AtomicU32::new(1));
        for (listener, is_login) in [(login, true), (bos, false)] {
            listener.set_nonblocking(true)?;
            let (state, stop, bos_address, cookies) = (
                state.clone(),
                stop.clone(),
                bos_address.clone(),
                cookies.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let (state, bos_address, cookies) =
                        (state.clone(), bos_address.clone(), cookies.clone());
                    std::thread::spawn(move || {
                        let result = if is_login {
                            serve_login(stream, &state, &bos_address, &cookies)
                        } else {
                            serve_bos(stream, &state)
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

fn serve_login(
    stream: TcpStream,
    state: &Shared,
    bos_address: &str,
    cookies: &AtomicU32,
) -> anyhow::Result<()> {
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
                let n = cookies.fetch_add(1, Ordering::SeqCst);
                let cookie = format!("cookie-{n:04}-{}", "x".repeat(240)).into_bytes();
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
