//! Gadu-Gadu, from GG 6 to GG 11.
//!
//! Framing: every packet is an 8-byte little-endian header (type, length of the
//! rest) and its payload. A payload longer than [`MAX_PAYLOAD`] (libgadu's own
//! limit) means the stream is not Gadu-Gadu as we know it.
//!
//! The local id is the UIN of the client's login packet (any generation); the
//! remote id is the peer's UIN. A server takes nothing before the login, so
//! nothing before it is an event, and the first login holds for the connection. A GG 6/7/8.0 conference message is addressed
//! to one UIN per packet and carries the other recipients: it is a group event
//! with that UIN as remote id. A GG 11 group chat has an id of its own: the
//! remote id is `chat-<id>`. Incoming group lines get the sender as prefix.
//! Every packet is forwarded as it came unless a filter rewrites a message.

mod classic;
mod gg11;
mod html;
mod packet;
mod protobuf;

use bytes::{Bytes, BytesMut};

use encoding_rs::WINDOWS_1250;

use crate::charset;
use crate::event::{ChatEvent, Direction, EventType};
use crate::session::{Feed, Frame, Pdu, ProtocolSession, Rewrite, Stop};

pub const HEADER_LEN: usize = 8;
/// The longest payload accepted, the limit libgadu applies to what it receives.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The sequence number of injected notices. Clients only echo it in acks.
const NOTICE_SEQ: u32 = 0x4953_5043;

/// Which generation of received-message packet the client understands, as
/// told by its login packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    /// GG_LOGIN .. GG_LOGIN80BETA: GG_RECV_MSG.
    Gg6,
    /// GG_LOGIN80: GG_RECV_MSG80.
    Gg8,
    /// GG_LOGIN105: GG_RECV_MSG110.
    Gg11,
}

#[derive(Debug, Default, Clone)]
pub struct GaduGaduSession {
    /// The local UIN and the generation it logged in with.
    login: Option<(u32, Generation)>,
    /// The latest server time seen, for the time field of injected notices
    /// (a parser has no clock of its own).
    server_time: u32,
}

/// A chat message as any generation's packet carries it.
struct Message {
    /// The other party: recipient of a sent message, sender of a received one.
    peer: Option<u32>,
    /// The GG 11 group chat the message belongs to.
    chat: Option<u64>,
    /// A GG 6/7/8.0 message with a conference recipient list.
    conference: bool,
    text: String,
    /// The server's time stamp on a received message.
    time: Option<u32>,
}

/// Who wrote a message, from the local user's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Author {
    /// The local user, sending it now.
    Local,
    /// The local user on another of their sessions; the server sends a copy.
    LocalElsewhere,
    Remote,
}

/// How to read a message packet.
#[derive(Debug, Clone, Copy)]
enum Format {
    Classic(classic::Layout),
    Protobuf(gg11::Shape),
}

/// The message packets, by direction and type.
fn message_format(dir: Direction, ty: u32) -> Option<(Format, Author)> {
    use gg11::Shape::{Received, Sent};
    use packet::*;
    use Format::{Classic, Protobuf};
    Some(match (dir, ty) {
        (Direction::Outgoing, SEND_MSG) => (Classic(classic::SEND), Author::Local),
        (Direction::Outgoing, SEND_MSG80) => (Classic(classic::SEND80), Author::Local),
        (Direction::Outgoing, SEND_MSG110 | CHAT_SEND_MSG) => (Protobuf(Sent), Author::Local),
        (Direction::Incoming, RECV_MSG) => (Classic(classic::RECV), Author::Remote),
        (Direction::Incoming, RECV_MSG80) => (Classic(classic::RECV80), Author::Remote),
        (Direction::Incoming, RECV_OWN_MSG) => (Classic(classic::RECV80), Author::LocalElsewhere),
        (Direction::Incoming, RECV_MSG110 | CHAT_RECV_MSG) => (Protobuf(Received), Author::Remote),
        (Direction::Incoming, RECV_OWN_MSG110 | CHAT_RECV_OWN_MSG) => {
            (Protobuf(Received), Author::LocalElsewhere)
        }
        _ => return None,
    })
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The text a message shows, from its XHTML part (what GG 8.0 and later
/// clients display) and its plain part (what older ones display): the XHTML
/// text when there is one. A plain part that says something else (no client
/// sends that; `as_plain` gives the XHTML text as the plain part's charset
/// holds it) is kept after it, so that the filters judge and the log keeps
/// both, and a rewrite replaces both.
fn shown_text(html: Option<&str>, plain: String, as_plain: impl Fn(&str) -> String) -> String {
    let Some(html) = html.map(html::to_text).filter(|t| !t.is_empty()) else {
        return plain;
    };
    let normal = |t: &str| t.replace('\r', "").trim().to_string();
    if plain.is_empty() || normal(&as_plain(&html)) == normal(&plain) {
        html
    } else {
        format!("{html}\n{plain}")
    }
}

/// A filter's text as a client can hold it: a NUL would end it early.
fn without_nul(text: &str) -> String {
    text.replace('\0', "")
}

fn frame(ty: u32, payload: &[u8]) -> Option<Bytes> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    Some(Bytes::from(out))
}

/// The local UIN and generation a login packet tells.
fn login(dir: Direction, ty: u32, payload: &[u8]) -> Option<(u32, Generation)> {
    use packet::*;
    match (dir, ty) {
        (Direction::Outgoing, LOGIN | LOGIN_EXT | LOGIN60 | LOGIN70 | LOGIN80BETA) => {
            Some((le32(payload, 0)?, Generation::Gg6))
        }
        (Direction::Outgoing, LOGIN80) => Some((le32(payload, 0)?, Generation::Gg8)),
        (Direction::Outgoing, LOGIN105) => Some((gg11::login_uin(payload)?, Generation::Gg11)),
        _ => None,
    }
}

/// "NAME SIZE bytes", the event text of a file offer.
fn file_text(name: &str, size: u64) -> String {
    format!("{name} {size} bytes")
}

impl GaduGaduSession {
    fn local_id(&self) -> String {
        self.login
            .map(|(uin, _)| uin.to_string())
            .unwrap_or_default()
    }

    fn event(&self, direction: Direction, kind: EventType, peer: u32, text: String) -> ChatEvent {
        ChatEvent {
            direction,
            kind,
            local_id: self.local_id(),
            remote_id: peer.to_string(),
            group: false,
            prefix: String::new(),
            text,
            encrypted: false,
        }
    }

    /// Update state from one packet and return its chat event, if it has one.
    fn inspect(&mut self, dir: Direction, ty: u32, payload: &[u8]) -> Option<ChatEvent> {
        use packet::*;
        let Some((local, _)) = self.login else {
            // A server takes nothing but a login first, and one login holds
            // for the whole connection.
            self.login = login(dir, ty, payload);
            return None;
        };
        if let Some((format, author)) = message_format(dir, ty) {
            let message = match format {
                Format::Classic(layout) => classic::message(layout, payload),
                Format::Protobuf(shape) => gg11::message(shape, payload),
            }?;
            if let (Some(time), Author::Remote) = (message.time, author) {
                self.server_time = time;
            }
            return self.message_event(author, message);
        }
        match (dir, ty) {
            (Direction::Incoming, LOGIN110_OK) => {
                self.server_time = gg11::server_time(payload, 4).unwrap_or(self.server_time);
            }
            (Direction::Incoming, PONG110) => {
                self.server_time = gg11::server_time(payload, 1).unwrap_or(self.server_time);
            }
            (_, TYPING_NOTIFICATION) => return self.typing(dir, payload),
            (_, DCC7_NEW) => return self.dcc7_offer(dir, payload),
            (Direction::Incoming, TRANSFER_INFO) => {
                let (peer, author, name, size) = gg11::transfer(payload)?;
                let direction = if author == local {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                };
                return Some(self.event(direction, EventType::File, peer, file_text(&name, size)));
            }
            _ => {}
        }
        None
    }

    fn message_event(&self, author: Author, message: Message) -> Option<ChatEvent> {
        if message.text.is_empty() {
            return None;
        }
        let remote_id = match (message.chat, message.peer) {
            (Some(chat), _) => format!("chat-{chat}"),
            (None, Some(peer)) => peer.to_string(),
            (None, None) => return None,
        };
        let group = message.chat.is_some() || message.conference;
        let prefix = match (author, message.peer) {
            (Author::Remote, Some(sender)) if group => format!("{sender}: "),
            _ => String::new(),
        };
        Some(ChatEvent {
            direction: match author {
                Author::Local | Author::LocalElsewhere => Direction::Outgoing,
                Author::Remote => Direction::Incoming,
            },
            kind: EventType::Message,
            local_id: self.local_id(),
            remote_id,
            group,
            prefix,
            text: message.text,
            encrypted: false,
        })
    }

    /// The conversation of a message packet from the start of its payload:
    /// `None` while the bytes that name the other party have not all arrived,
    /// `Some(None)` for a packet that is no message or names nobody.
    fn conversation_of(&self, dir: Direction, ty: u32, head: &[u8]) -> Option<Option<ChatEvent>> {
        let (Some(_), Some((format, author))) = (self.login, message_format(dir, ty)) else {
            return Some(None);
        };
        let peer = match format {
            Format::Classic(_) => le32(head, 0).ok_or(()),
            // Field 1, the peer's UIN, comes first.
            Format::Protobuf(_) => match head {
                [0x0a, len, ..] if *len < 0x80 => head
                    .get(2..2 + usize::from(*len))
                    .map(|field| gg11::uin(field).unwrap_or_default())
                    .ok_or(()),
                [0x0a] | [] => Err(()),
                _ => Ok(0),
            },
        };
        let direction = match author {
            Author::Remote => Direction::Incoming,
            Author::Local | Author::LocalElsewhere => Direction::Outgoing,
        };
        match peer {
            Err(()) => None,
            Ok(0) => Some(None),
            Ok(peer) => Some(Some(self.event(
                direction,
                EventType::Message,
                peer,
                String::new(),
            ))),
        }
    }

    /// GG_TYPING_NOTIFICATION: u16 number of characters typed (0 when the
    /// user stopped), u32 peer UIN. Only typing in progress is an event.
    fn typing(&self, dir: Direction, payload: &[u8]) -> Option<ChatEvent> {
        let typed = u16::from_le_bytes(payload.get(..2)?.try_into().ok()?);
        let peer = le32(payload, 2)?;
        (typed > 0).then(|| self.event(dir, EventType::Typing, peer, String::new()))
    }

    /// GG_DCC7_NEW: u64 id, u32 sender, u32 recipient, u32 type, 255-byte
    /// CP1250 file name, u64 size, 20-byte hash. Type 4 is a file (1 is voice).
    fn dcc7_offer(&self, dir: Direction, payload: &[u8]) -> Option<ChatEvent> {
        const TYPE_FILE: u32 = 4;
        const NAME_AT: usize = 20;
        const SIZE_AT: usize = NAME_AT + 255;
        if payload.len() < SIZE_AT + 8 + 20 || le32(payload, 16)? != TYPE_FILE {
            return None;
        }
        let peer = match dir {
            Direction::Outgoing => le32(payload, 12)?,
            Direction::Incoming => le32(payload, 8)?,
        };
        let name = &payload[NAME_AT..SIZE_AT];
        let name = charset::decode(
            WINDOWS_1250,
            name.split(|&b| b == 0).next().unwrap_or_default(),
        );
        let size =
            u64::from(le32(payload, SIZE_AT)?) | u64::from(le32(payload, SIZE_AT + 4)?) << 32;
        Some(self.event(dir, EventType::File, peer, file_text(&name, size)))
    }
}

impl ProtocolSession for GaduGaduSession {
    fn feed(&mut self, dir: Direction, buf: &mut BytesMut) -> Feed {
        let mut feed = Feed::default();
        // Packets without events are forwarded together as one opaque frame.
        let mut plain_len = 0;
        loop {
            let rest = &buf[plain_len..];
            let (Some(ty), Some(len)) = (le32(rest, 0), le32(rest, 4)) else {
                break;
            };
            let len = len as usize;
            if len > MAX_PAYLOAD {
                let Some(conversation) = self.conversation_of(dir, ty, &rest[HEADER_LEN..]) else {
                    // Its first bytes name the conversation: wait for them.
                    break;
                };
                // What was understood goes out; the rest is relayed unparsed.
                feed.stop = Some(Stop::TooLarge {
                    why: format!("Gadu-Gadu packet of type {ty:#x} and {len} bytes (limit 64 KiB)"),
                    conversation: conversation.map(Box::new),
                });
                break;
            }
            let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else {
                break;
            };
            let end = plain_len + HEADER_LEN + len;
            match self.inspect(dir, ty, payload) {
                None => plain_len = end,
                Some(event) => {
                    if plain_len > 0 {
                        feed.frames
                            .push(Frame::Opaque(buf.split_to(plain_len).freeze()));
                    }
                    let bytes = buf.split_to(end - plain_len).freeze();
                    feed.frames.push(Frame::Pdu(Pdu {
                        bytes,
                        events: vec![event],
                    }));
                    plain_len = 0;
                }
            }
        }
        if plain_len > 0 {
            feed.frames
                .push(Frame::Opaque(buf.split_to(plain_len).freeze()));
        }
        feed
    }

    fn rewrite(&self, dir: Direction, pdu: &Pdu, change: Rewrite<'_>) -> Option<Bytes> {
        let Rewrite::Text(text) = change;
        let text = without_nul(text);
        let ty = le32(&pdu.bytes, 0)?;
        let payload = pdu.bytes.get(HEADER_LEN..)?;
        let (format, _) = message_format(dir, ty)?;
        let payload = match format {
            Format::Classic(layout) => classic::rewrite(layout, payload, &text)?,
            Format::Protobuf(shape) => gg11::rewrite(shape, payload, &text)?,
        };
        frame(ty, &payload)
    }

    fn notice_to_client(&self, remote_id: &str, text: &str) -> Option<Bytes> {
        let (_, generation) = self.login?;
        let sender: u32 = remote_id.parse().ok()?;
        let text = without_nul(text);
        let (seq, time) = (NOTICE_SEQ, self.server_time);
        match generation {
            Generation::Gg6 => frame(
                packet::RECV_MSG,
                &classic::received(classic::RECV, sender, seq, time, &text),
            ),
            Generation::Gg8 => frame(
                packet::RECV_MSG80,
                &classic::received(classic::RECV80, sender, seq, time, &text),
            ),
            Generation::Gg11 => frame(
                packet::RECV_MSG110,
                &gg11::received(sender, seq, time, &text),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
