//! A Gadu-Gadu server that speaks just enough of the protocol for real clients
//! to log in (GG 8.0 and GG 11, any password) and for logged-in users to
//! exchange messages, typing notifications and DCC7 file offers. Packet layouts
//! follow libgadu's `protocol.h`, `libgadu.h` and `packets.proto`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Generation;
use crate::netns::Netns;

pub const PORT: u16 = 8074;
/// libgadu refuses longer packets too.
const MAX_PAYLOAD: usize = 64 * 1024;

mod packet {
    pub const WELCOME: u32 = 0x01;
    pub const SEND_MSG_ACK: u32 = 0x05;
    pub const PONG: u32 = 0x07;
    pub const PING: u32 = 0x08;
    pub const DCC7_NEW: u32 = 0x20;
    /// GG_DCC7_ID_REQUEST from the client, GG_DCC7_ID_REPLY from the server.
    pub const DCC7_ID: u32 = 0x23;
    pub const SEND_MSG80: u32 = 0x2d;
    pub const RECV_MSG80: u32 = 0x2e;
    pub const LOGIN80: u32 = 0x31;
    pub const LOGIN80_OK: u32 = 0x35;
    pub const TYPING_NOTIFICATION: u32 = 0x59;
    pub const SEND_MSG110: u32 = 0x7d;
    pub const RECV_MSG110: u32 = 0x7e;
    pub const LOGIN105: u32 = 0x83;
    pub const SEND_MSG_ACK110: u32 = 0x87;
    pub const LOGIN110_OK: u32 = 0x9d;
    pub const PONG110: u32 = 0xa1;
}

#[derive(Default)]
struct State {
    /// The connections of the logged-in users.
    users: HashMap<u32, TcpStream>,
    /// What the server did, for failure messages.
    journal: Vec<String>,
    next_dcc_id: u64,
}

type Shared = Arc<Mutex<State>>;

/// The server, accepting on port 8074 of a namespace until dropped.
pub struct GgServer {
    state: Shared,
    stop: Arc<AtomicBool>,
}

impl GgServer {
    pub fn start(ns: &Netns) -> anyhow::Result<Self> {
        let listener = ns.run(|| TcpListener::bind(("0.0.0.0", PORT)))??;
        listener.set_nonblocking(true)?;
        let server = GgServer {
            state: Shared::default(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (state, stop) = (server.state.clone(), server.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        std::thread::spawn(move || serve(stream, state));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(server)
    }

    /// What the server received and relayed so far, one entry a line.
    pub fn journal(&self) -> String {
        self.state.lock().expect("server state").journal.join("\n")
    }
}

impl Drop for GgServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

fn write_packet(stream: &mut TcpStream, kind: u32, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&kind.to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u32, Vec<u8>)> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header)?;
    let kind = le32(&header, 0).unwrap_or_default();
    let len = le32(&header, 4).unwrap_or_default() as usize;
    if len > MAX_PAYLOAD {
        return Err(std::io::Error::other(format!("{len}-byte packet")));
    }
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload)?;
    Ok((kind, payload))
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// One client connection: the welcome, the login, then packets until EOF.
fn serve(mut stream: TcpStream, state: Shared) {
    let seed = 0x1234_5678u32;
    if write_packet(&mut stream, packet::WELCOME, &seed.to_le_bytes()).is_err() {
        return;
    }
    let mut me = None;
    while let Ok((kind, payload)) = read_packet(&mut stream) {
        let mut state = state.lock().expect("server state");
        let result = match me {
            None => login(&mut stream, kind, &payload, &mut state).map(|uin| me = uin),
            Some((uin, generation)) => handle(&mut state, uin, generation, kind, &payload),
        };
        if let Err(e) = result {
            state.journal.push(format!("error: {e}"));
            break;
        }
    }
    if let Some((uin, _)) = me {
        let mut state = state.lock().expect("server state");
        state.users.remove(&uin);
        state.journal.push(format!("{uin} left"));
    }
}

/// Accept a GG 8.0 or GG 11 login with any password.
fn login(
    stream: &mut TcpStream,
    kind: u32,
    payload: &[u8],
    state: &mut State,
) -> std::io::Result<Option<(u32, Generation)>> {
    let (uin, generation) = match kind {
        packet::LOGIN80 => {
            let uin = le32(payload, 0).ok_or_else(|| short("GG_LOGIN80"))?;
            write_packet(stream, packet::LOGIN80_OK, &1u32.to_le_bytes())?;
            (uin, Generation::Gg80)
        }
        packet::LOGIN105 => {
            let uin = protobuf::fields(payload)
                .find_map(|(n, v)| (n == 2).then(|| protobuf::uin(v.bytes()?)).flatten())
                .ok_or_else(|| short("GG_LOGIN105"))?;
            let mut ok = Vec::new();
            protobuf::put_varint(&mut ok, 1, 1);
            protobuf::put_bytes(&mut ok, 2, b"0123456789abcdef");
            protobuf::put_varint(&mut ok, 3, uin.into());
            protobuf::put_fixed32(&mut ok, 4, now());
            write_packet(stream, packet::LOGIN110_OK, &ok)?;
            (uin, Generation::Gg11)
        }
        other => {
            state
                .journal
                .push(format!("ignored 0x{other:x} before login"));
            return Ok(None);
        }
    };
    state
        .journal
        .push(format!("{uin} logged in ({generation:?})"));
    let stream = stream.try_clone()?;
    state.users.insert(uin, stream);
    Ok(Some((uin, generation)))
}

fn short(what: &str) -> std::io::Error {
    std::io::Error::other(format!("{what} too short"))
}

/// A packet from a logged-in user.
fn handle(
    state: &mut State,
    uin: u32,
    generation: Generation,
    kind: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    match (kind, generation) {
        (packet::PING, Generation::Gg80) => reply(state, uin, packet::PONG, &[]),
        (packet::PING, Generation::Gg11) => {
            let mut pong = Vec::new();
            protobuf::put_fixed32(&mut pong, 1, now());
            reply(state, uin, packet::PONG110, &pong)
        }
        (packet::SEND_MSG80, Generation::Gg80) => send_msg80(state, uin, payload),
        (packet::SEND_MSG110, Generation::Gg11) => send_msg110(state, uin, payload),
        (packet::TYPING_NOTIFICATION, _) => {
            // length (16 bits), then the recipient, which becomes the sender.
            let to = le32(payload, 2).ok_or_else(|| short("GG_TYPING_NOTIFICATION"))?;
            let mut out = payload[..2].to_vec();
            out.extend_from_slice(&uin.to_le_bytes());
            relay(state, uin, to, packet::TYPING_NOTIFICATION, &out)?;
            Ok(())
        }
        (packet::DCC7_ID, _) => {
            // The transfer type, then an 8-byte id of the server's choosing.
            state.next_dcc_id += 1;
            let mut id = payload
                .get(..4)
                .ok_or_else(|| short("GG_DCC7_ID_REQUEST"))?
                .to_vec();
            id.extend_from_slice(&state.next_dcc_id.to_le_bytes());
            reply(state, uin, packet::DCC7_ID, &id)
        }
        (packet::DCC7_NEW, _) => {
            // id (8), uin_from, uin_to, ...: passed on as it is.
            let to = le32(payload, 12).ok_or_else(|| short("GG_DCC7_NEW"))?;
            relay(state, uin, to, packet::DCC7_NEW, payload)?;
            Ok(())
        }
        (other, _) => {
            state.journal.push(format!("{uin}: ignored 0x{other:x}"));
            Ok(())
        }
    }
}

fn reply(state: &mut State, uin: u32, kind: u32, payload: &[u8]) -> std::io::Result<()> {
    let stream = state.users.get_mut(&uin).expect("a logged-in user");
    write_packet(stream, kind, payload)
}

/// Pass a packet to `to` if they are online; returns whether it was written.
fn relay(
    state: &mut State,
    from: u32,
    to: u32,
    kind: u32,
    payload: &[u8],
) -> std::io::Result<bool> {
    let Some(stream) = state.users.get_mut(&to) else {
        state
            .journal
            .push(format!("0x{kind:x} {from}->{to}: offline"));
        return Ok(false);
    };
    // A recipient that went away is the recipient's problem, not the sender's.
    let delivered = write_packet(stream, kind, payload).is_ok();
    state.journal.push(format!("0x{kind:x} {from}->{to}"));
    Ok(delivered)
}

/// GG_SEND_MSG80 (recipient, seq, class, offset_plain, offset_attr, parts)
/// becomes GG_RECV_MSG80 (sender, seq, time, class, offsets, parts): the header
/// grows by four bytes, so do the offsets, which count from the payload start.
fn send_msg80(state: &mut State, uin: u32, payload: &[u8]) -> std::io::Result<()> {
    let field = |i: usize| le32(payload, 4 * i).ok_or_else(|| short("GG_SEND_MSG80"));
    let (to, seq, class) = (field(0)?, field(1)?, field(2)?);
    let (plain, attr) = (field(3)?, field(4)?);
    let mut out = Vec::with_capacity(payload.len() + 4);
    for value in [uin, seq, now(), class, plain + 4, attr + 4] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&payload[20..]);
    let delivered = relay(state, uin, to, packet::RECV_MSG80, &out)?;
    // GG_SEND_MSG_ACK: status (delivered 0x02, not delivered 0x06), recipient, seq.
    let status: u32 = if delivered { 0x02 } else { 0x06 };
    let mut ack = Vec::new();
    for value in [status, to, seq] {
        ack.extend_from_slice(&value.to_le_bytes());
    }
    reply(state, uin, packet::SEND_MSG_ACK, &ack)
}

/// GG_SEND_MSG110 (1 recipient, 3 seq, 5 plain, 6 xhtml) becomes
/// GG_RECV_MSG110 (1 sender, 2 flags, 3 seq, 4 time, 5 plain, 6 xhtml), acked
/// with GG_SEND_MSG_ACK110 (1 type, 2 seq, 3 time, 7 zero).
fn send_msg110(state: &mut State, uin: u32, payload: &[u8]) -> std::io::Result<()> {
    let (mut to, mut seq, mut plain, mut xhtml) = (None, 0, &b""[..], None);
    for (n, value) in protobuf::fields(payload) {
        match (n, value) {
            (1, protobuf::Value::Bytes(b)) => to = protobuf::uin(b),
            (3, protobuf::Value::Varint(v)) => seq = v,
            (5, protobuf::Value::Bytes(b)) => plain = b,
            (6, protobuf::Value::Bytes(b)) => xhtml = Some(b),
            _ => {}
        }
    }
    let to = to.ok_or_else(|| short("GG_SEND_MSG110 without a recipient"))?;
    let time = now();
    let mut out = Vec::new();
    protobuf::put_bytes(&mut out, 1, &protobuf::uin_bytes(uin));
    protobuf::put_varint(&mut out, 2, 0);
    protobuf::put_varint(&mut out, 3, seq);
    protobuf::put_fixed32(&mut out, 4, time);
    protobuf::put_bytes(&mut out, 5, plain);
    if let Some(xhtml) = xhtml {
        protobuf::put_bytes(&mut out, 6, xhtml);
    }
    relay(state, uin, to, packet::RECV_MSG110, &out)?;
    let mut ack = Vec::new();
    protobuf::put_varint(&mut ack, 1, 1);
    protobuf::put_varint(&mut ack, 2, seq);
    protobuf::put_fixed32(&mut ack, 3, time);
    protobuf::put_varint(&mut ack, 7, 0);
    reply(state, uin, packet::SEND_MSG_ACK110, &ack)
}

/// The little of the protocol-buffer wire format the GG 11 packets use.
mod protobuf {
    pub enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        /// 32 or 64 bits, unused here.
        Fixed,
    }

    impl<'a> Value<'a> {
        pub fn bytes(self) -> Option<&'a [u8]> {
            match self {
                Value::Bytes(b) => Some(b),
                _ => None,
            }
        }
    }

    fn varint(data: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *data.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// The fields of a message, up to the first malformed one.
    pub fn fields(data: &[u8]) -> impl Iterator<Item = (u64, Value<'_>)> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let key = varint(data, &mut at)?;
            let value = match key & 7 {
                0 => Value::Varint(varint(data, &mut at)?),
                1 | 5 => {
                    at += if key & 7 == 1 { 8 } else { 4 };
                    data.get(..at)?;
                    Value::Fixed
                }
                2 => {
                    let len = usize::try_from(varint(data, &mut at)?).ok()?;
                    let bytes = data.get(at..at.checked_add(len)?)?;
                    at += len;
                    Value::Bytes(bytes)
                }
                _ => return None,
            };
            Some((key >> 3, value))
        })
    }

    fn put_raw_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    pub fn put_varint(out: &mut Vec<u8>, field: u64, value: u64) {
        put_raw_varint(out, field << 3);
        put_raw_varint(out, value);
    }

    pub fn put_bytes(out: &mut Vec<u8>, field: u64, value: &[u8]) {
        put_raw_varint(out, field << 3 | 2);
        put_raw_varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }

    pub fn put_fixed32(out: &mut Vec<u8>, field: u64, value: u32) {
        put_raw_varint(out, field << 3 | 5);
        out.extend_from_slice(&value.to_le_bytes());
    }

    /// A UIN as GG 11 writes it: a magic byte, the length, the decimal digits.
    pub fn uin_bytes(uin: u32) -> Vec<u8> {
        let digits = uin.to_string();
        let mut out = vec![0x01, digits.len() as u8];
        out.extend_from_slice(digits.as_bytes());
        out
    }

    pub fn uin(data: &[u8]) -> Option<u32> {
        let (&len, digits) = data.get(1..)?.split_first()?;
        std::str::from_utf8(digits.get(..usize::from(len))?)
            .ok()?
            .parse()
            .ok()
    }
}
