//! Chat rooms (family 0x0E), on a connection of their own.
//!
//! 0E/02 (server to client) describes the room: exchange, cookie, instance,
//! detail level, then a counted TLV block whose 0x00d3 (or 0x006a) is its name.
//! 0E/05 (client) and 0E/06 (server) carry one line: an 8-byte cookie, a
//! 16-bit channel and TLVs; 0E/06's TLV 0x0003 is the sender's user info
//! (screen name first); TLV 0x0005 holds the message TLVs: 0x0001 the text,
//! 0x0002 its charset by name.

use super::charset;
use super::tlv::{self, Reader};

pub const ROOM_INFO: u16 = 0x0002;
pub const SEND: u16 = 0x0005;
pub const RECEIVE: u16 = 0x0006;

const ROOM_NAME: u16 = 0x00d3;
const ROOM_FULL_NAME: u16 = 0x006a;
const SENDER_TLV: u16 = 0x0003;
const MESSAGE_TLV: u16 = 0x0005;
const TEXT_TLV: u16 = 0x0001;
const CHARSET_TLV: u16 = 0x0002;

/// The room's name from a 0E/02 body.
pub fn room_name(body: &[u8]) -> Result<Option<String>, String> {
    let mut r = Reader::new(body);
    r.u16("chat room exchange")?;
    r.string8("chat room cookie")?;
    r.u16("chat room instance")?;
    r.u8("chat room detail level")?;
    let count = r.u16("chat room TLV count")?;
    let tlvs = r.tlvs(count).map_err(|e| format!("chat room info: {e}"))?;
    let name = tlv::find(&tlvs, ROOM_NAME).or_else(|| tlv::find(&tlvs, ROOM_FULL_NAME));
    Ok(name.map(|n| charset::legacy(n).text))
}

/// A line of a room: the sender's screen name (incoming lines) and the text.
pub struct Line<'a> {
    pub sender: Option<&'a [u8]>,
    pub text: String,
    pub malformed: Option<String>,
}

pub fn line(subtype: u16, body: &[u8]) -> Result<Option<Line<'_>>, String> {
    let tlvs = tlv::chain(
        body.get(10..)
            .ok_or("chat message shorter than its header")?,
    )
    .map_err(|e| format!("chat message: {e}"))?;
    let sender = match (subtype, tlv::find(&tlvs, SENDER_TLV)) {
        (RECEIVE, Some(info)) => Some(Reader::new(info).string8("chat sender")?),
        _ => None,
    };
    let Some(message) = tlv::find(&tlvs, MESSAGE_TLV) else {
        return Ok(None);
    };
    let message = tlv::chain(message).map_err(|e| format!("chat message: {e}"))?;
    let Some(text) = tlv::find(&message, TEXT_TLV) else {
        return Ok(None);
    };
    let label = tlv::find(&message, CHARSET_TLV).unwrap_or(b"us-ascii");
    let decoded = charset::decode_label(label, text);
    let malformed = decoded.malformed.then(|| {
        format!(
            "chat message text of {} bytes is not valid in its charset",
            text.len()
        )
    });
    Ok((!decoded.text.is_empty()).then_some(Line {
        sender,
        text: decoded.text,
        malformed,
    }))
}

/// A 0E/05 or 0E/06 body with `text` in place of its text: in the line's
/// charset when that holds it, else in UCS-2BE with the label changed.
pub fn rewrite(body: &[u8], text: &str) -> Option<Vec<u8>> {
    let head = body.get(..10)?;
    let tlvs = tlv::chain(&body[10..]).ok()?;
    let message = tlv::chain(tlv::find(&tlvs, MESSAGE_TLV)?).ok()?;
    let label = tlv::find(&message, CHARSET_TLV).unwrap_or(b"us-ascii");
    // UTF-8 holds any text, ASCII labels any ASCII text; the rest goes in UCS-2BE.
    let keeps = label.eq_ignore_ascii_case(b"utf-8")
        || (text.is_ascii() && !label.eq_ignore_ascii_case(charset::UCS2_LABEL));
    let message = if keeps {
        tlv::replace(&message, TEXT_TLV, text.as_bytes())?
    } else {
        let with_text = tlv::replace(&message, TEXT_TLV, &charset::ucs2_bytes(text))?;
        tlv::replace(
            &tlv::chain(&with_text).ok()?,
            CHARSET_TLV,
            charset::UCS2_LABEL,
        )?
    };
    let mut out = head.to_vec();
    out.extend_from_slice(&tlv::replace(&tlvs, MESSAGE_TLV, &message)?);
    Some(out)
}
