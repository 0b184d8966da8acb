//! ICBM (family 0x04): messages between two users.
//!
//! 04/06 (client to server) and 04/07 (server to client) start with an 8-byte
//! cookie, a 16-bit channel and the other party's screen name; 04/07 then has
//! the sender's warning level and a counted user-info TLV block. The message
//! TLVs follow:
//! - channel 1, TLV 0x0002: fragments (id, version, 16-bit length, data);
//!   each id-1 fragment is a 16-bit charset, a 16-bit subset and text;
//! - channel 2, TLV 0x0005: a rendezvous (16-bit type, cookie, 16-byte
//!   capability, TLVs): send-file, video, or ICQ server-relayed text;
//! - channel 4, TLV 0x0005: an old ICQ message (little-endian UIN, type,
//!   flags, length, NUL-terminated text).
//!
//! 04/14 is a typing notification: cookie, channel, screen name, 16-bit state.

use super::charset;
use super::tlv::{self, Reader, Tlv};

pub const SEND: u16 = 0x0006;
pub const RECEIVE: u16 = 0x0007;
pub const TYPING: u16 = 0x0014;

const MESSAGE_TLV: u16 = 0x0002;
const DATA_TLV: u16 = 0x0005;
const TEXT_FRAGMENT: u8 = 0x01;
const CAPABILITIES_FRAGMENT: u8 = 0x05;
/// MTN state "typing begun".
const TYPING_BEGUN: u16 = 0x0002;
/// Rendezvous type 0: a proposal (1 cancels, 2 accepts).
const PROPOSE: u16 = 0x0000;
const EXTENDED_DATA: u16 = 0x2711;
const FILE_NAME_CHARSET: u16 = 0x2712;
/// Old ICQ message type 1: plain text.
const ICQ_PLAIN_TEXT: u8 = 0x01;

/// The capability GUIDs are these 16 bytes with byte 2 and 3 varied.
pub(super) const CAPABILITY_TAIL: [u8; 12] = [
    0x4c, 0x7f, 0x11, 0xd1, 0x82, 0x22, 0x44, 0x45, 0x53, 0x54, 0x00, 0x00,
];
const SEND_FILE: [u8; 2] = [0x13, 0x43];
const ICQ_SERVER_RELAY: [u8; 2] = [0x13, 0x49];
/// Video chat, live video, camera.
const VIDEO: [[u8; 2]; 3] = [[0x01, 0x00], [0x01, 0x01], [0x01, 0x02]];

/// What an ICBM carries that is an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Content {
    /// A text message; `malformed` says why its bytes did not fit their charset.
    Message {
        text: String,
        malformed: Option<String>,
    },
    /// A file offer: "NAME SIZE bytes".
    File(String),
    Webcam,
    Typing,
}

/// An ICBM that is an event, with the other party's screen name.
pub struct Icbm<'a> {
    pub peer: &'a [u8],
    pub content: Content,
}

/// The fixed part of a message ICBM, and where its TLVs start.
struct Layout<'a> {
    channel: u16,
    peer: &'a [u8],
    tlvs_at: usize,
}

fn layout(subtype: u16, body: &[u8]) -> Result<Layout<'_>, String> {
    let mut r = Reader::new(body);
    r.bytes(8, "ICBM cookie")?;
    let channel = r.u16("ICBM channel")?;
    let peer = r.string8("ICBM screen name")?;
    if subtype == RECEIVE {
        r.u16("ICBM warning level")?;
        let count = r.u16("ICBM user info count")?;
        r.tlvs(count)?;
    }
    Ok(Layout {
        channel,
        peer,
        tlvs_at: r.position(),
    })
}

/// The event of a 04/06, 04/07 or 04/14 SNAC body, if it is one.
pub fn parse(subtype: u16, body: &[u8]) -> Result<Option<Icbm<'_>>, String> {
    if subtype == TYPING {
        let mut r = Reader::new(body);
        r.bytes(10, "typing notification header")?;
        let peer = r.string8("typing notification screen name")?;
        let state = r.u16("typing notification state")?;
        return Ok((state == TYPING_BEGUN).then_some(Icbm {
            peer,
            content: Content::Typing,
        }));
    }
    let layout = layout(subtype, body)?;
    let tlvs = tlv::chain(&body[layout.tlvs_at..]).map_err(|e| format!("ICBM: {e}"))?;
    let content = match layout.channel {
        1 => match tlv::find(&tlvs, MESSAGE_TLV) {
            Some(fragments) => message(fragments)?,
            None => None,
        },
        2 => match tlv::find(&tlvs, DATA_TLV) {
            Some(data) => rendezvous(data)?,
            None => None,
        },
        4 => match tlv::find(&tlvs, DATA_TLV) {
            Some(data) => icq_message(data)?,
            None => None,
        },
        _ => None,
    };
    Ok(content.map(|content| Icbm {
        peer: layout.peer,
        content,
    }))
}

/// One fragment of a channel-1 message.
struct Fragment<'a> {
    id: u8,
    version: u8,
    data: &'a [u8],
}

fn fragments(bytes: &[u8]) -> Result<Vec<Fragment<'_>>, String> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        let id = r.u8("message fragment")?;
        let version = r.u8("message fragment")?;
        let len = r.u16("message fragment length")?;
        let data = r.bytes(usize::from(len), "message fragment")?;
        out.push(Fragment { id, version, data });
    }
    Ok(out)
}

/// A text fragment's charset, subset and text bytes.
fn text_fragment(data: &[u8]) -> Result<(u16, u16, &[u8]), String> {
    let mut r = Reader::new(data);
    let charset = r.u16("message text charset")?;
    let subset = r.u16("message text charset")?;
    Ok((charset, subset, r.rest()))
}

/// The texts of every text fragment, each in the charset it declares.
fn message(bytes: &[u8]) -> Result<Option<Content>, String> {
    let mut text = String::new();
    let mut malformed = None;
    for fragment in fragments(bytes).map_err(|e| format!("ICBM: {e}"))? {
        if fragment.id != TEXT_FRAGMENT {
            continue;
        }
        let (set, _, bytes) = text_fragment(fragment.data).map_err(|e| format!("ICBM: {e}"))?;
        let decoded = charset::decode(set, bytes);
        if decoded.malformed && malformed.is_none() {
            malformed = Some(format!(
                "ICBM message fragment of {} bytes is not valid in its charset {set:#06x}",
                bytes.len()
            ));
        }
        text.push_str(&decoded.text);
    }
    Ok((!text.is_empty()).then_some(Content::Message { text, malformed }))
}

fn capability(guid: &[u8], id: [u8; 2]) -> bool {
    guid.len() == 16
        && guid[..2] == [0x09, 0x46]
        && guid[2..4] == id
        && guid[4..] == CAPABILITY_TAIL
}

/// A rendezvous proposal: a file offer, a video invitation, or an ICQ
/// message relayed by the server.
fn rendezvous(data: &[u8]) -> Result<Option<Content>, String> {
    let mut r = Reader::new(data);
    let ty = r.u16("rendezvous type")?;
    r.bytes(8, "rendezvous cookie")?;
    let guid = r.bytes(16, "rendezvous capability")?;
    let tlvs = tlv::chain(r.rest()).map_err(|e| format!("ICBM rendezvous: {e}"))?;
    if ty != PROPOSE {
        return Ok(None);
    }
    if VIDEO.iter().any(|id| capability(guid, *id)) {
        return Ok(Some(Content::Webcam));
    }
    let Some(extended) = tlv::find(&tlvs, EXTENDED_DATA) else {
        return Ok(None);
    };
    if capability(guid, SEND_FILE) {
        return file_offer(&tlvs, extended);
    }
    if capability(guid, ICQ_SERVER_RELAY) {
        return server_relayed(extended);
    }
    Ok(None)
}

/// TLV 0x2711 of a send-file proposal: 16-bit single/multiple flag, 16-bit
/// file count, 32-bit total size, NUL-terminated name (in the charset TLV
/// 0x2712 names).
fn file_offer(tlvs: &[Tlv<'_>], extended: &[u8]) -> Result<Option<Content>, String> {
    let mut r = Reader::new(extended);
    r.u16("file offer")?;
    r.u16("file offer")?;
    let size = r.u32("file offer size")?;
    let name = until_nul(r.rest());
    let name = match tlv::find(tlvs, FILE_NAME_CHARSET) {
        Some(label) => charset::decode_label(label, name).text,
        None => charset::legacy(name).text,
    };
    Ok(Some(Content::File(format!("{name} {size} bytes"))))
}

/// TLV 0x2711 of an ICQ server-relayed message: two length-prefixed
/// (little-endian) headers, then message type, flags, status, priority and a
/// little-endian length of the NUL-terminated text.
fn server_relayed(extended: &[u8]) -> Result<Option<Content>, String> {
    let mut r = Reader::new(extended);
    for _ in 0..2 {
        let n = r.u16_le("server-relayed message header")?;
        r.bytes(usize::from(n), "server-relayed message header")?;
    }
    let ty = r.u8("server-relayed message type")?;
    r.bytes(5, "server-relayed message flags")?;
    let len = r.u16_le("server-relayed message length")?;
    let text = r.bytes(usize::from(len), "server-relayed message text")?;
    Ok(plain_text(ty, text))
}

/// Channel 4: 32-bit little-endian UIN, type, flags, 16-bit little-endian
/// length, NUL-terminated text.
fn icq_message(data: &[u8]) -> Result<Option<Content>, String> {
    let mut r = Reader::new(data);
    r.u32_le("ICQ message UIN")?;
    let ty = r.u8("ICQ message type")?;
    r.u8("ICQ message flags")?;
    let len = r.u16_le("ICQ message length")?;
    let text = r.bytes(usize::from(len), "ICQ message text")?;
    Ok(plain_text(ty, text))
}

fn plain_text(ty: u8, text: &[u8]) -> Option<Content> {
    let text = charset::legacy(until_nul(text)).text;
    (ty == ICQ_PLAIN_TEXT && !text.is_empty()).then_some(Content::Message {
        text,
        malformed: None,
    })
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// The body of a message ICBM with `text` in place of its text, every
/// enclosing length recomputed; `None` for an ICBM that is not a message of
/// channel 1 or 4.
pub fn rewrite(subtype: u16, body: &[u8], text: &str) -> Option<Vec<u8>> {
    let layout = layout(subtype, body).ok()?;
    let tlvs = tlv::chain(&body[layout.tlvs_at..]).ok()?;
    let (ty, value) = match layout.channel {
        1 => (
            MESSAGE_TLV,
            rewrite_fragments(tlv::find(&tlvs, MESSAGE_TLV)?, text)?,
        ),
        4 => (DATA_TLV, rewrite_icq(tlv::find(&tlvs, DATA_TLV)?, text)?),
        _ => return None,
    };
    let mut out = body[..layout.tlvs_at].to_vec();
    out.extend_from_slice(&tlv::replace(&tlvs, ty, &value)?);
    Some(out)
}

/// The fragments with the whole text in the first text fragment (in its
/// charset when that can hold it), the other text fragments dropped.
fn rewrite_fragments(bytes: &[u8], text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut written = false;
    for fragment in fragments(bytes).ok()? {
        if fragment.id != TEXT_FRAGMENT {
            put_fragment(&mut out, fragment.id, fragment.version, fragment.data)?;
            continue;
        }
        if written {
            continue;
        }
        let (set, subset, _) = text_fragment(fragment.data).ok()?;
        put_fragment(
            &mut out,
            TEXT_FRAGMENT,
            fragment.version,
            &text_data(set, subset, text),
        )?;
        written = true;
    }
    written.then_some(out)
}

fn text_data(set: u16, subset: u16, text: &str) -> Vec<u8> {
    let (set, bytes) = charset::encode(set, text);
    let mut data = set.to_be_bytes().to_vec();
    data.extend_from_slice(&subset.to_be_bytes());
    data.extend_from_slice(&bytes);
    data
}

fn put_fragment(out: &mut Vec<u8>, id: u8, version: u8, data: &[u8]) -> Option<()> {
    out.extend_from_slice(&[id, version]);
    out.extend_from_slice(&u16::try_from(data.len()).ok()?.to_be_bytes());
    out.extend_from_slice(data);
    Some(())
}

/// An old ICQ message with a new text: the Western codepage when it reads
/// back as the same text, else UTF-8.
fn rewrite_icq(data: &[u8], text: &str) -> Option<Vec<u8>> {
    let head = data.get(..6)?;
    let western = crate::charset::encode_exact(encoding_rs::WINDOWS_1252, text)
        .filter(|bytes| charset::legacy(bytes).text == text);
    let mut bytes = western.unwrap_or_else(|| text.as_bytes().to_vec());
    bytes.push(0);
    let mut out = head.to_vec();
    out.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&bytes);
    Some(out)
}

/// The body of a 04/07 that shows `text` from `sender` on channel 1.
pub fn incoming_message(sender: &[u8], text: &str) -> Option<Vec<u8>> {
    let mut body = b"IMSPCTR\0".to_vec();
    body.extend_from_slice(&1u16.to_be_bytes());
    body.push(u8::try_from(sender.len()).ok()?);
    body.extend_from_slice(sender);
    // Warning level 0, no user info.
    body.extend_from_slice(&[0, 0, 0, 0]);
    let mut fragments = Vec::new();
    put_fragment(&mut fragments, CAPABILITIES_FRAGMENT, 1, &[1])?;
    let set = if text.is_ascii() {
        charset::ASCII
    } else {
        charset::UCS2BE
    };
    put_fragment(&mut fragments, TEXT_FRAGMENT, 1, &text_data(set, 0, text))?;
    tlv::put(&mut body, MESSAGE_TLV, &fragments)?;
    Some(body)
}
