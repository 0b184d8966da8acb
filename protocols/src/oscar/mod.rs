//! ICQ and AIM over OSCAR.
//!
//! Framing: FLAPs ([`flap`]); a channel-2 FLAP carries one SNAC ([`snac`]),
//! whose body is mostly TLV chains ([`tlv`]). Every length is checked against
//! what contains it: a FLAP's length against its 16-bit field (a FLAP is held
//! until complete, so at most 64 KiB), a TLV or fragment against its FLAP.
//!
//! Only the FLAPs that can carry an event or an id are held until complete:
//! sign-on and sign-off, and the SNACs listed in [`wanted`]. Every other FLAP
//! goes out as soon as its header (and SNAC kind) is read, the rest of it as
//! it arrives. A stream that does not start a FLAP with 0x2a, or a FLAP
//! whose PDU is malformed where we read it, stops inspection (the relay logs
//! why and relays the rest untouched).
//!
//! Events: ICBM messages ([`icbm`]), typing begun, file and video proposals,
//! and chat-room lines ([`chat`]) with the room as remote id. An OTR message
//! is logged as `[OTR encrypted message]`, marked encrypted. The local id
//! comes from the sign-on ([`login`]); the cookie of the login reply carries
//! it to the BOS connection through the relay's [`Handoff`] table.

mod charset;
mod chat;
mod flap;
mod icbm;
mod login;
mod snac;
mod tlv;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::event::{ChatEvent, Direction, EventType};
use crate::handoff::Handoff;
use crate::session::{Feed, Frame, Pdu, ProtocolSession, Rewrite, Stop};

#[derive(Clone, Default)]
pub struct OscarSession {
    /// The local user, normalised.
    local: Option<String>,
    /// The room of a chat connection, from 0E/02.
    room: Option<String>,
    /// Bytes of the current FLAP still to pass through unread, per direction.
    skip: [usize; 2],
    /// The last FLAP sequence number towards the client (for notices).
    client_seq: u16,
    ids: Option<Arc<dyn Handoff>>,
}

/// The SNACs (family, subtype) that carry events or ids, by direction.
fn wanted(dir: Direction, family: u16, subtype: u16) -> bool {
    use Direction::{Incoming, Outgoing};
    matches!(
        (dir, family, subtype),
        (
            Outgoing,
            snac::AUTH,
            login::AUTH_LOGIN | login::AUTH_KEY_REQUEST
        ) | (Incoming, snac::AUTH, login::AUTH_REPLY)
            | (
                Incoming,
                snac::SERVICE,
                login::SERVICE_REDIRECT | login::SELF_INFO
            )
            | (Outgoing, snac::ICBM, icbm::SEND | icbm::TYPING)
            | (Incoming, snac::ICBM, icbm::RECEIVE | icbm::TYPING)
            | (Outgoing, snac::CHAT, chat::SEND)
            | (Incoming, snac::CHAT, chat::RECEIVE | chat::ROOM_INFO)
    )
}

/// Whether a FLAP must be held until complete: `None` while too little of it
/// is there to tell.
fn held(dir: Direction, header: flap::Header, data: &[u8]) -> Option<bool> {
    Some(match (dir, header.channel) {
        (Direction::Outgoing, flap::SIGN_ON) | (Direction::Incoming, flap::SIGN_OFF) => true,
        (_, flap::SNAC) if header.len >= 4 => {
            let (family, subtype) = snac::kind(data)?;
            wanted(dir, family, subtype)
        }
        _ => false,
    })
}

/// An OTR message (data, key exchange, query): its text starts with `?OTR`,
/// after any HTML tags the client wrapped it in.
fn is_otr(text: &str) -> bool {
    let mut rest = text.trim_start();
    while let Some(tag) = rest.strip_prefix('<') {
        match tag.split_once('>') {
            Some((_, after)) => rest = after.trim_start(),
            None => return false,
        }
    }
    rest.starts_with("?OTR")
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

/// What one complete FLAP gave: its event, and why inspection must stop
/// after it (bytes malformed for their charset).
#[derive(Default)]
struct Inspected {
    event: Option<ChatEvent>,
    stop: Option<String>,
}

impl OscarSession {
    fn local_id(&self) -> String {
        self.local.clone().unwrap_or_default()
    }

    fn learn(&mut self, ids: login::Ids<'_>, handed_out: bool) {
        if let Some(name) = ids.screen_name {
            self.local = Some(login::normalise(name));
        }
        let (Some(cookie), Some(table)) = (ids.cookie, &self.ids) else {
            return;
        };
        if handed_out {
            if let Some(local) = &self.local {
                table.remember(cookie, local);
            }
        } else if self.local.is_none() {
            self.local = table.recall(cookie);
        }
    }

    fn event(&self, dir: Direction, kind: EventType, remote: String, text: String) -> ChatEvent {
        ChatEvent {
            direction: dir,
            kind,
            local_id: self.local_id(),
            remote_id: remote,
            group: false,
            prefix: String::new(),
            text,
            encrypted: false,
        }
    }

    /// Update state from one complete FLAP that [`held`] asked for.
    fn inspect(&mut self, dir: Direction, channel: u8, data: &[u8]) -> Result<Inspected, String> {
        match channel {
            flap::SIGN_ON => self.learn(login::sign_on(data)?, false),
            flap::SIGN_OFF => self.learn(login::from_tlvs(data)?, true),
            _ => return self.inspect_snac(dir, data),
        }
        Ok(Inspected::default())
    }

    fn inspect_snac(&mut self, dir: Direction, data: &[u8]) -> Result<Inspected, String> {
        let snac = snac::parse(data)?;
        let context = |e: String| format!("SNAC {:02x}/{:02x}: {e}", snac.family, snac.subtype);
        match (snac.family, snac.subtype) {
            (snac::AUTH, _) => {
                let handed_out = snac.subtype == login::AUTH_REPLY;
                self.learn(login::from_tlvs(snac.body).map_err(context)?, handed_out);
            }
            (snac::SERVICE, login::SELF_INFO) => {
                self.local = Some(login::normalise(
                    login::self_info(snac.body).map_err(context)?,
                ));
            }
            (snac::SERVICE, _) => {
                let ids = login::from_tlvs(snac.body).map_err(context)?;
                self.learn(ids, true);
            }
            (snac::ICBM, subtype) => {
                let Some(message) = icbm::parse(subtype, snac.body).map_err(context)? else {
                    return Ok(Inspected::default());
                };
                let remote = login::normalise(message.peer);
                let (kind, text, stop) = match message.content {
                    icbm::Content::Message { text, malformed } => {
                        (EventType::Message, text, malformed)
                    }
                    icbm::Content::File(text) => (EventType::File, text, None),
                    icbm::Content::Webcam => (EventType::Webcam, String::new(), None),
                    icbm::Content::Typing => (EventType::Typing, String::new(), None),
                };
                let mut event = self.event(dir, kind, remote, text);
                if kind == EventType::Message && is_otr(&event.text) {
                    event.text = "[OTR encrypted message]".into();
                    event.encrypted = true;
                }
                return Ok(Inspected {
                    event: Some(event),
                    stop: stop.map(context),
                });
            }
            (snac::CHAT, chat::ROOM_INFO) => {
                if let Some(room) = chat::room_name(snac.body).map_err(context)? {
                    self.room = Some(room);
                }
            }
            (snac::CHAT, subtype) => {
                let Some(line) = chat::line(subtype, snac.body).map_err(context)? else {
                    return Ok(Inspected::default());
                };
                let room = self.room.clone().unwrap_or_default();
                let mut event = self.event(dir, EventType::Message, room, line.text);
                event.group = true;
                if let Some(sender) = line.sender {
                    event.prefix = format!("{}: ", login::normalise(sender));
                }
                return Ok(Inspected {
                    event: Some(event),
                    stop: line.malformed.map(context),
                });
            }
            _ => {}
        }
        Ok(Inspected::default())
    }
}

impl ProtocolSession for OscarSession {
    fn feed(&mut self, dir: Direction, buf: &mut BytesMut) -> Feed {
        let mut feed = Feed::default();
        let mut skip = self.skip[index(dir)];
        // Bytes at the front of `buf` that go out as one opaque frame.
        let mut plain = 0;
        let mut stop = None;
        loop {
            if skip > 0 {
                let n = skip.min(buf.len() - plain);
                plain += n;
                skip -= n;
                if skip > 0 {
                    break;
                }
            }
            let rest = &buf[plain..];
            if let Err(why) = flap::check_start(rest) {
                stop = Some(why);
                break;
            }
            let Some(header) = flap::header(rest) else {
                break;
            };
            if dir == Direction::Incoming {
                self.client_seq = header.seq;
            }
            let data = &rest[flap::HEADER_LEN..];
            let total = flap::HEADER_LEN + header.len;
            match held(dir, header, data) {
                None => break,
                Some(false) => {
                    let n = total.min(rest.len());
                    plain += n;
                    skip = total - n;
                    continue;
                }
                Some(true) if rest.len() < total => break,
                Some(true) => {}
            }
            let data = &rest[flap::HEADER_LEN..total];
            let inspected = match self.inspect(dir, header.channel, data) {
                Ok(inspected) => inspected,
                Err(why) => {
                    plain += total;
                    stop = Some(format!("OSCAR: {why}"));
                    break;
                }
            };
            match inspected.event {
                None => plain += total,
                Some(event) => {
                    if plain > 0 {
                        feed.frames
                            .push(Frame::Opaque(buf.split_to(plain).freeze()));
                        plain = 0;
                    }
                    feed.frames.push(Frame::Pdu(Pdu {
                        bytes: buf.split_to(total).freeze(),
                        events: vec![event],
                    }));
                }
            }
            if let Some(why) = inspected.stop {
                stop = Some(format!("OSCAR: {why}"));
                break;
            }
        }
        if plain > 0 {
            feed.frames
                .push(Frame::Opaque(buf.split_to(plain).freeze()));
        }
        self.skip[index(dir)] = skip;
        feed.stop = stop.map(Stop::NotThisProtocol);
        feed
    }

    fn share_ids(&mut self, ids: Arc<dyn Handoff>) {
        self.ids = Some(ids);
    }

    fn rewrite(&self, _dir: Direction, pdu: &Pdu, change: Rewrite<'_>) -> Option<Bytes> {
        let Rewrite::Text(text) = change;
        // The log names an encrypted message's scheme; its text is not that.
        if pdu.events.iter().any(|e| e.encrypted) {
            return None;
        }
        let header = flap::header(&pdu.bytes)?;
        let data = pdu.bytes.get(flap::HEADER_LEN..)?;
        let snac = snac::parse(data).ok()?;
        let body = match snac.family {
            snac::ICBM => icbm::rewrite(snac.subtype, snac.body, text)?,
            snac::CHAT => chat::rewrite(snac.body, text)?,
            _ => return None,
        };
        let mut data = snac.head.to_vec();
        data.extend_from_slice(&body);
        flap::encode(header.channel, header.seq, &data).map(Bytes::from)
    }

    fn notice_to_client(&self, remote_id: &str, text: &str) -> Option<Bytes> {
        if self.room.is_some() {
            // A chat connection serves no ICBM family.
            return None;
        }
        let body = icbm::incoming_message(remote_id.as_bytes(), text)?;
        let data = snac::encode(snac::ICBM, icbm::RECEIVE, &body);
        flap::encode(flap::SNAC, self.client_seq.wrapping_add(1), &data).map(Bytes::from)
    }
}

#[cfg(test)]
mod tests;
