//! The binary message packets of GG 6/7 (GG_SEND_MSG, GG_RECV_MSG) and GG 8.0
//! (GG_SEND_MSG80, GG_RECV_MSG80, GG_RECV_OWN_MSG).
//!
//! Both start with fixed little-endian fields (peer UIN first). GG 6/7 follow
//! them with the CP1250 text and its NUL; GG 8.0 with an XHTML part (UTF-8),
//! then the CP1250 plain part at `offset_plain`, and options at `offset_attr`.
//! Options are tagged blocks: 0x01 conference recipients, 0x02 rich-text
//! formats (positions in the text), 0x04..0x06 image request and reply.

use encoding_rs::WINDOWS_1250;

use super::{html, le32, shown_text, Message};
use crate::charset;

/// Where a message packet keeps its fields.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Length of the fixed part.
    fixed: usize,
    time_at: Option<usize>,
    class_at: usize,
    /// Position of `offset_plain`, `offset_attr` follows it (GG 8.0 only).
    offsets_at: Option<usize>,
}

pub const SEND: Layout = Layout {
    fixed: 12,
    time_at: None,
    class_at: 8,
    offsets_at: None,
};
pub const RECV: Layout = Layout {
    fixed: 16,
    time_at: Some(8),
    class_at: 12,
    offsets_at: None,
};
pub const SEND80: Layout = Layout {
    fixed: 20,
    time_at: None,
    class_at: 8,
    offsets_at: Some(12),
};
pub const RECV80: Layout = Layout {
    fixed: 24,
    time_at: Some(8),
    class_at: 12,
    offsets_at: Some(16),
};

/// GG_CLASS_CTCP: a request for a direct connection, not a chat line.
const CLASS_CTCP: u32 = 0x10;
/// GG_CLASS_CHAT, what a client shows in its chat window.
const CLASS_CHAT: u32 = 0x08;

const OPTION_CONFERENCE: u8 = 0x01;
const OPTION_FORMATS: u8 = 0x02;

/// The parts of a message packet, borrowing from its payload.
struct Parts<'a> {
    fixed: &'a [u8],
    /// GG 8.0's XHTML part up to its NUL, when the packet has one.
    html: Option<&'a [u8]>,
    /// The CP1250 text up to its NUL.
    plain: &'a [u8],
    /// The conference recipients block, tag included.
    conference: Option<&'a [u8]>,
    /// An image request or reply: the packet carries no chat text.
    image: bool,
}

fn until_nul(bytes: &[u8]) -> Option<&[u8]> {
    memchr::memchr(0, bytes).map(|end| &bytes[..end])
}

fn split(layout: Layout, payload: &[u8]) -> Option<Parts<'_>> {
    let fixed = payload.get(..layout.fixed)?;
    let (html, plain, options) = match layout.offsets_at {
        None => {
            let plain = until_nul(&payload[layout.fixed..])?;
            (None, plain, &payload[layout.fixed + plain.len() + 1..])
        }
        Some(at) => {
            let offset_plain = usize::try_from(le32(payload, at)?).ok()?;
            let offset_attr = usize::try_from(le32(payload, at + 4)?).ok()?;
            if offset_plain < layout.fixed || offset_plain >= payload.len() {
                return None;
            }
            let html = (offset_plain > layout.fixed).then(|| {
                let part = &payload[layout.fixed..offset_plain];
                until_nul(part).unwrap_or(part)
            });
            let plain = until_nul(&payload[offset_plain..])?;
            let options = if (layout.fixed..payload.len()).contains(&offset_attr) {
                &payload[offset_attr..]
            } else {
                &[][..]
            };
            (html, plain, options)
        }
    };
    let (conference, image) = scan_options(options);
    Some(Parts {
        fixed,
        html,
        plain,
        conference,
        image,
    })
}

/// Walk the option blocks; an unknown or truncated block ends the walk, as in
/// the clients.
fn scan_options(mut rest: &[u8]) -> (Option<&[u8]>, bool) {
    let mut conference = None;
    while let Some(&tag) = rest.first() {
        let len = match tag {
            OPTION_CONFERENCE => le32(rest, 1)
                .and_then(|count| usize::try_from(count).ok()?.checked_mul(4)?.checked_add(5)),
            OPTION_FORMATS => rest
                .get(1..3)
                .map(|l| usize::from(u16::from_le_bytes([l[0], l[1]])) + 3),
            0x04..=0x06 => return (conference, true),
            _ => None,
        };
        let Some(block) = len.and_then(|len| rest.get(..len)) else {
            break;
        };
        if tag == OPTION_CONFERENCE && conference.is_none() {
            conference = Some(block);
        }
        rest = &rest[block.len()..];
    }
    (conference, false)
}

/// The chat message in a packet of this layout, if it carries one.
pub fn message(layout: Layout, payload: &[u8]) -> Option<Message> {
    let parts = split(layout, payload)?;
    let class = le32(parts.fixed, layout.class_at)?;
    if class & CLASS_CTCP != 0 || parts.image {
        return None;
    }
    let text = shown_text(
        parts.html.map(String::from_utf8_lossy).as_deref(),
        charset::decode(WINDOWS_1250, parts.plain),
        |html| charset::decode(WINDOWS_1250, &charset::encode_lossy(WINDOWS_1250, html)),
    );
    Some(Message {
        peer: le32(parts.fixed, 0),
        chat: None,
        conference: parts.conference.is_some(),
        text,
        time: layout.time_at.and_then(|at| le32(parts.fixed, at)),
    })
}

/// The payload with `text` in place of the message: the XHTML part becomes
/// markup showing the text, the plain part its CP1250 form, and every offset is
/// recomputed. Parts that were absent stay absent, conference recipients are
/// kept, rich-text formats (which point into the old text) are dropped.
pub fn rewrite(layout: Layout, payload: &[u8], text: &str) -> Option<Vec<u8>> {
    let parts = split(layout, payload)?;
    let html = parts.html.map(|_| html::from_text(text));
    let plain = if parts.plain.is_empty() {
        Vec::new()
    } else {
        charset::encode_lossy(WINDOWS_1250, text)
    };
    let mut out = parts.fixed.to_vec();
    if let Some(html) = &html {
        out.extend_from_slice(html.as_bytes());
        out.push(0);
    }
    let offset_plain = out.len();
    out.extend_from_slice(&plain);
    out.push(0);
    let offset_attr = out.len();
    out.extend_from_slice(parts.conference.unwrap_or_default());
    if let Some(at) = layout.offsets_at {
        out[at..at + 4].copy_from_slice(&u32::try_from(offset_plain).ok()?.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&u32::try_from(offset_attr).ok()?.to_le_bytes());
    }
    Some(out)
}

/// A received-message payload of this layout showing `text` from `sender`.
pub fn received(layout: Layout, sender: u32, seq: u32, time: u32, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&sender.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&time.to_le_bytes());
    out.extend_from_slice(&CLASS_CHAT.to_le_bytes());
    if layout.offsets_at.is_some() {
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(html::from_text(text).as_bytes());
        out.push(0);
    }
    let offset_plain = out.len() as u32;
    out.extend_from_slice(&charset::encode_lossy(WINDOWS_1250, text));
    out.push(0);
    let offset_attr = out.len() as u32;
    if let Some(at) = layout.offsets_at {
        out[at..at + 4].copy_from_slice(&offset_plain.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&offset_attr.to_le_bytes());
    }
    out
}
