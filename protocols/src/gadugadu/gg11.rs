//! The protocol-buffer packets of GG 10.5/11 (libgadu's packets.proto).
//!
//! Messages both ways share most of their shape (GG110SendMessage /
//! GG110RecvMessage): 1 peer UIN, 3 seq, 4 time, 5 plain text, 6 XHTML,
//! 10 chat id. Field 7 differs: rich-text or image data in a received message,
//! an empty string in a sent one. All text is UTF-8. A UIN travels as bytes: a magic byte, the
//! length of the decimal number, the number's digits.

use super::protobuf::{self, put_bytes, put_fixed32, put_uint, Value};
use super::{html, shown_text, Message};

const PEER: u32 = 1;
const FLAGS: u32 = 2;
const SEQ: u32 = 3;
const TIME: u32 = 4;
const PLAIN: u32 = 5;
const XHTML: u32 = 6;
const DATA: u32 = 7;
const CHAT_ID: u32 = 10;

/// Which of the two message shapes a packet has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Sent,
    Received,
}

pub fn uin(bytes: &[u8]) -> Option<u32> {
    let (&len, digits) = bytes.get(1..)?.split_first()?;
    if usize::from(len) != digits.len() || !(1..=10).contains(&len) {
        return None;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn put_uin(out: &mut Vec<u8>, number: u32, uin: u32) {
    let digits = uin.to_string();
    let mut value = vec![0, digits.len() as u8];
    value.extend_from_slice(digits.as_bytes());
    put_bytes(out, number, &value);
}

/// The text a client shows of a string field: up to the first NUL.
fn shown(bytes: &[u8]) -> String {
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The UIN of GG_LOGIN105 (field 2).
pub fn login_uin(payload: &[u8]) -> Option<u32> {
    uin(protobuf::bytes(&protobuf::parse(payload)?, 2)?)
}

/// The server time in GG_LOGIN110_OK (field 4) or GG_PONG110 (field 1).
pub fn server_time(payload: &[u8], field: u32) -> Option<u32> {
    protobuf::fixed32(&protobuf::parse(payload)?, field)
}

pub fn message(shape: Shape, payload: &[u8]) -> Option<Message> {
    let fields = protobuf::parse(payload)?;
    let plain = protobuf::bytes(&fields, PLAIN)
        .map(shown)
        .unwrap_or_default();
    let data = protobuf::bytes(&fields, DATA);
    if shape == Shape::Received && plain.is_empty() && data.is_some() {
        // An image, announced in the data field.
        return None;
    }
    let html = protobuf::bytes(&fields, XHTML).map(shown);
    let text = shown_text(html.as_deref(), plain, str::to_string);
    Some(Message {
        peer: protobuf::bytes(&fields, PEER).and_then(uin),
        chat: protobuf::fixed64(&fields, CHAT_ID),
        conference: false,
        text,
        time: protobuf::fixed32(&fields, TIME),
    })
}

/// The payload with `text` in place of the message. The plain field is
/// replaced unless it was empty, the XHTML field becomes markup showing the
/// text, rich-text data of a received message (positions in the old text) is
/// dropped, and every other field is kept as it was, in its place.
pub fn rewrite(shape: Shape, payload: &[u8], text: &str) -> Option<Vec<u8>> {
    let fields = protobuf::parse(payload)?;
    let mut out = Vec::with_capacity(payload.len() + text.len());
    for field in &fields {
        match (field.number, field.value) {
            (PLAIN, Value::Bytes(old)) if !shown(old).is_empty() => {
                put_bytes(&mut out, PLAIN, text.as_bytes())
            }
            (XHTML, Value::Bytes(_)) => {
                put_bytes(&mut out, XHTML, html::from_text(text).as_bytes())
            }
            (DATA, Value::Bytes(_)) if shape == Shape::Received => {}
            _ => out.extend_from_slice(&payload[field.raw.clone()]),
        }
    }
    Some(out)
}

/// A GG_RECV_MSG110 payload showing `text` from `sender`.
pub fn received(sender: u32, seq: u32, time: u32, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_uin(&mut out, PEER, sender);
    put_uint(&mut out, FLAGS, 0);
    put_uint(&mut out, SEQ, u64::from(seq));
    put_fixed32(&mut out, TIME, time);
    put_bytes(&mut out, PLAIN, text.as_bytes());
    put_bytes(&mut out, XHTML, html::from_text(text).as_bytes());
    out
}

/// A file offered through the GG 11 file service (GG_TRANSFER_INFO, type 6):
/// the peer's UIN, the author's UIN, the file name and size.
pub fn transfer(payload: &[u8]) -> Option<(u32, u32, String, u64)> {
    const FILE_TRANSFER: u64 = 6;
    let fields = protobuf::parse(payload)?;
    if protobuf::uint(&fields, 1)? != FILE_TRANSFER {
        return None;
    }
    let party = |number| -> Option<u32> {
        let inner = protobuf::parse(protobuf::bytes(&fields, number)?)?;
        uin(protobuf::bytes(&inner, 2)?)
    };
    let file = protobuf::parse(protobuf::bytes(&fields, 6)?)?;
    let name = shown(protobuf::bytes(&file, 7)?);
    let size = protobuf::uint(&file, 8)?;
    Some((party(2)?, party(4)?, name, size))
}
