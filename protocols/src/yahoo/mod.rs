//! Yahoo Messenger, the YMSG pager connection (YMSG 9 to 16).
//!
//! Framing: every packet is a 20-byte header, whose 16-bit length field
//! counts the key/value pairs that follow (see [`packet`]). Packets of the
//! services that carry chat events are taken whole and their pairs parsed;
//! every other packet is forwarded as its bytes arrive, unparsed, so a
//! buddy list of many kilobytes is never held. Bytes that do not start with
//! `YMSG`, a version newer than 16 or malformed pairs in an inspected packet
//! stop the inspection of the connection (it is relayed untouched from there).
//!
//! Ids: keys 0, 1 and 4 name the sender of a packet, 5 its recipient; the
//! local user is the sender of what the client sends and the recipient of what
//! it receives. Conferences and chat rooms are group chats whose remote id is
//! the conference or room name; incoming lines are prefixed with the sender.

mod events;
pub mod packet;
mod text;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::event::{ChatEvent, Direction};
use crate::session::{Feed, Frame, Pdu, ProtocolSession, Rewrite, Stop};
use packet::{service, Header, PairsError, MAGIC};

pub use packet::{HEADER_LEN, MAX_PAIRS, NEWEST_VERSION};

/// The status of the packets a server sends to deliver a message.
const STATUS_SERVER: u32 = 1;
/// How many conferences and chat rooms are remembered for notices.
const MAX_GROUPS: usize = 64;
/// Longer room or member names are not remembered (so a connection keeps at
/// most a few tens of KiB of them); their events are logged all the same.
const MAX_NAME: usize = 255;

#[derive(Debug, Default, Clone)]
pub struct YahooSession {
    /// The local user: the login's id, else the sender of a client packet.
    local: Option<String>,
    /// Bytes of a forwarded, uninspected packet still to come, per direction.
    skip: [usize; 2],
    /// The latest header from the server and from the client: the version and
    /// session id of injected notices.
    server_header: Option<Header>,
    client_header: Option<Header>,
    groups: Groups,
}

/// A group chat's kind: they have different packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    Conference,
    Chat,
}

#[derive(Debug, Clone)]
struct Group {
    kind: Room,
    /// As the protocol spells it (the client matches it exactly).
    name: String,
    /// Another participant, whom a notice into the group comes from.
    member: Option<String>,
}

/// The latest group chats seen, newest last, at most [`MAX_GROUPS`].
#[derive(Debug, Default, Clone)]
struct Groups(VecDeque<Group>);

impl Groups {
    fn find(&self, name: &str) -> Option<&Group> {
        self.0
            .iter()
            .rev()
            .find(|g| g.name.eq_ignore_ascii_case(name))
    }

    /// Remember `name` (and `member` of it, when known) as the newest.
    fn note(&mut self, kind: Room, name: &str, member: Option<&str>) {
        if name.is_empty() || name.len() > MAX_NAME {
            return;
        }
        let known = self
            .0
            .iter()
            .position(|g| g.kind == kind && g.name.eq_ignore_ascii_case(name));
        let mut group = match known.and_then(|at| self.0.remove(at)) {
            Some(group) => group,
            None => Group {
                kind,
                name: name.to_string(),
                member: None,
            },
        };
        if let Some(member) = member.filter(|m| !m.is_empty() && m.len() <= MAX_NAME) {
            group.member = Some(member.to_string());
        }
        self.0.push_back(group);
        if self.0.len() > MAX_GROUPS {
            self.0.pop_front();
        }
    }
}

fn dir_index(dir: Direction) -> usize {
    match dir {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

/// Whether packets of `service` in direction `dir` are parsed.
fn inspected(dir: Direction, service: u16) -> bool {
    use service::*;
    match service {
        MESSAGE | NOTIFY | FILETRANSFER | P2PFILEXFER | FILETRANS_15 | COMMENT => true,
        CONFINVITE..=CONFMSG => true,
        AUTH | AUTHRESP => dir == Direction::Outgoing,
        _ => false,
    }
}

/// The length and events of one frame to be.
type Part = (usize, Vec<ChatEvent>);

/// Add a packet to the frames: runs of packets without events become one.
fn push(parts: &mut Vec<Part>, len: usize, events: Vec<ChatEvent>) {
    match parts.last_mut() {
        Some((n, last)) if last.is_empty() && events.is_empty() => *n += len,
        _ => parts.push((len, events)),
    }
}

/// What the front of `rest` is.
enum Next {
    /// Not enough bytes to tell.
    Partial,
    Header(Header),
    Bad(String),
}

fn next_header(rest: &[u8]) -> Next {
    let magic = &rest[..rest.len().min(MAGIC.len())];
    if !MAGIC.starts_with(magic) {
        return Next::Bad(format!(
            "the bytes {:02x?} are not the start of a YMSG packet",
            &rest[..rest.len().min(8)]
        ));
    }
    if rest.len() < HEADER_LEN {
        return Next::Partial;
    }
    let header = Header::parse(rest);
    if header.version > NEWEST_VERSION {
        return Next::Bad(format!(
            "YMSG version {} is newer than {NEWEST_VERSION}, the last this parser knows",
            header.version
        ));
    }
    Next::Header(header)
}

impl ProtocolSession for YahooSession {
    fn feed(&mut self, dir: Direction, buf: &mut BytesMut) -> Feed {
        let d = dir_index(dir);
        let mut parts: Vec<Part> = Vec::new();
        let mut stop = None;
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            if self.skip[d] > 0 {
                let n = self.skip[d].min(rest.len());
                self.skip[d] -= n;
                push(&mut parts, n, Vec::new());
                pos += n;
                continue;
            }
            let header = match next_header(rest) {
                Next::Partial => break,
                Next::Bad(why) => {
                    stop = Some(Stop::NotThisProtocol(why));
                    break;
                }
                Next::Header(header) => header,
            };
            let len = header.packet_len();
            match dir {
                Direction::Outgoing => self.client_header = Some(header),
                Direction::Incoming => self.server_header = Some(header),
            }
            if !inspected(dir, header.service) {
                let n = len.min(rest.len());
                self.skip[d] = len - n;
                push(&mut parts, n, Vec::new());
                pos += n;
                continue;
            }
            let Some(payload) = rest.get(HEADER_LEN..len) else {
                break;
            };
            match packet::pairs(payload) {
                Ok(pairs) => {
                    let events = self.inspect(dir, &header, &pairs);
                    push(&mut parts, len, events);
                    pos += len;
                }
                Err(PairsError::Malformed(why)) => {
                    stop = Some(Stop::NotThisProtocol(format!(
                        "YMSG packet of service {:#04x} ({len} bytes) is malformed: {why}",
                        header.service
                    )));
                    break;
                }
                Err(PairsError::TooMany(first)) => {
                    stop = Some(Stop::TooLarge {
                        why: format!(
                            "YMSG packet of service {:#04x} ({len} bytes) with more than {MAX_PAIRS} key/value pairs",
                            header.service
                        ),
                        conversation: self.conversation_of(dir, header.service, &first).map(Box::new),
                    });
                    break;
                }
            }
        }
        let frames = parts
            .into_iter()
            .map(|(len, events)| {
                let bytes = buf.split_to(len).freeze();
                if events.is_empty() {
                    Frame::Opaque(bytes)
                } else {
                    Frame::Pdu(Pdu { bytes, events })
                }
            })
            .collect();
        Feed { frames, stop }
    }

    fn rewrite(&self, _dir: Direction, pdu: &Pdu, change: Rewrite<'_>) -> Option<Bytes> {
        let Rewrite::Text(new_text) = change;
        // Several messages in one packet (offline messages) would all get the
        // one new text: only a packet with one text is rewritten.
        let first = pdu.events.first()?;
        if pdu.events.iter().any(|e| e.text != first.text) {
            return None;
        }
        let header = Header::parse(&pdu.bytes);
        let pairs = packet::pairs(pdu.bytes.get(HEADER_LEN..)?).ok()?;
        let text_key = events::text_key(header.service)?;
        let mut values: Vec<(u32, Vec<u8>)> = Vec::with_capacity(pairs.len());
        for record in events::records(header.service, &pairs) {
            let utf8 = events::is_utf8(record);
            for pair in record {
                let value = if pair.key == text_key && !pair.value.is_empty() {
                    text::encode(new_text, utf8)?
                } else {
                    pair.value.to_vec()
                };
                values.push((pair.key, value));
            }
        }
        let values: Vec<(u32, &[u8])> = values.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        packet::encode(&header, &values).map(Bytes::from)
    }

    fn notice_to_client(&self, remote_id: &str, text: &str) -> Option<Bytes> {
        let server = self.server_header.or(self.client_header)?;
        let local = self.local.as_deref();
        let body = text.as_bytes();
        let (service, mut pairs): (u16, Vec<(u32, &[u8])>) = match self.groups.find(remote_id) {
            Some(group) => {
                let member = group.member.as_deref()?.as_bytes();
                let name = group.name.as_bytes();
                match group.kind {
                    Room::Conference => (
                        service::CONFMSG,
                        vec![(57, name), (3, member), (14, body), (97, b"1")],
                    ),
                    Room::Chat => (
                        service::COMMENT,
                        vec![
                            (104, name),
                            (109, member),
                            (117, body),
                            (124, b"1"),
                            (97, b"1"),
                        ],
                    ),
                }
            }
            None if !remote_id.is_empty() => (
                service::MESSAGE,
                vec![(4, remote_id.as_bytes()), (14, body), (97, b"1")],
            ),
            None => return None,
        };
        if let Some(local) = local {
            let key = if service == service::MESSAGE { 5 } else { 1 };
            pairs.insert(0, (key, local.as_bytes()));
        }
        let header = Header {
            service,
            status: STATUS_SERVER,
            len: 0,
            ..server
        };
        packet::encode(&header, &pairs).map(Bytes::from)
    }
}

#[cfg(test)]
mod tests;
