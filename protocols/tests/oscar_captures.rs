//! The OSCAR parser on the real capture (ICQ over OSCAR): every expected
//! event, in order, every byte forwarded unchanged, and rewritten messages
//! that a fresh parser reads back with the new texts.

mod support;

use bytes::BytesMut;
use imspector_protocols::invariants::replay;
use imspector_protocols::oscar::OscarSession;
use imspector_protocols::{Direction, EventType, Frame, ProtocolSession, Rewrite};

#[test]
fn oscar_captures_give_the_expected_events() {
    for stream in support::streams_across_gaps("oscar") {
        let mut session = OscarSession::default();
        let result = replay(&mut session, &stream.chunk_refs());
        assert_eq!(result.stopped, None, "{}", stream.name);
        support::assert_expected_events(&stream, &result.events);
    }
}

/// Every message gets a new text, longer and not ASCII: the peer must read
/// the new texts with the same parties.
#[test]
fn rewritten_captures_carry_the_new_texts() {
    let index = |dir| usize::from(dir == Direction::Incoming);
    for stream in support::streams_across_gaps("oscar") {
        let (mut proxy, mut peer) = (OscarSession::default(), OscarSession::default());
        let mut at_proxy = [BytesMut::new(), BytesMut::new()];
        let mut at_peer = [BytesMut::new(), BytesMut::new()];
        let (mut wanted, mut got) = (Vec::new(), Vec::new());
        for (dir, bytes) in &stream.chunks {
            let i = index(*dir);
            at_proxy[i].extend_from_slice(bytes);
            for frame in proxy.feed(*dir, &mut at_proxy[i]).frames {
                let bytes = match frame {
                    Frame::Opaque(b) => b,
                    Frame::Pdu(pdu) if pdu.events[0].kind == EventType::Message => {
                        let old = &pdu.events[0];
                        let new = format!("«{}» ✓", old.text);
                        wanted.push((new.clone(), old.remote_id.clone(), old.direction));
                        proxy.rewrite(*dir, &pdu, Rewrite::Text(&new)).unwrap()
                    }
                    Frame::Pdu(pdu) => pdu.bytes,
                };
                at_peer[i].extend_from_slice(&bytes);
            }
            for frame in peer.feed(*dir, &mut at_peer[i]).frames {
                if let Frame::Pdu(pdu) = frame {
                    got.extend(
                        pdu.events
                            .into_iter()
                            .filter(|e| e.kind == EventType::Message)
                            .map(|e| (e.text, e.remote_id, e.direction)),
                    );
                }
            }
        }
        assert_eq!(wanted.len(), 2, "{}", stream.name);
        assert_eq!(got, wanted, "{}", stream.name);
    }
}

#[test]
fn oscar_survives_random_chunking_and_mutation() {
    support::replay_damaged::<OscarSession>("oscar", 300, 0x05c4);
}
