//! MSNC P2P: finding MSNSLP INVITEs for file transfers and webcams in
//! `application/x-msnmsgrp2p` payloads (P2Pv1 binary headers up to MSNP15,
//! P2Pv2 from MSNP16), reassembled when the INVITE spans several chunks.

use memchr::memmem;

const FILE_TRANSFER: &str = "{5D3E02AB-6190-11D3-BBBB-00C04F795683}";
/// "Media session" (show my webcam) and "media receive only" (view yours).
const WEBCAM: [&str; 2] = [
    "{4BD96FC0-AB17-4425-A14A-439185962DC8}",
    "{1C9AA97E-9C05-4583-A3BD-908A196F1E92}",
];

/// An INVITE split over chunks is given up beyond this size: real ones are
/// about 1.5 KiB (a 638-byte context in base64 plus the SLP headers).
const MAX_SLP: usize = 64 * 1024;

/// What an MSNSLP INVITE asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invite {
    File { name: String, size: u64 },
    Webcam,
}

/// Whether a GUID names a webcam session (also used by the old
/// `text/x-msmsgsinvite` invitations' `Application-GUID`).
pub fn is_webcam_guid(guid: &str) -> bool {
    WEBCAM.iter().any(|g| g.eq_ignore_ascii_case(guid.trim()))
}

/// Which binary header a P2P payload starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 48 bytes little-endian, 4-byte footer (MSNP9 to MSNP15).
    V1,
    /// Variable length big-endian with a data header (MSNP16 on).
    V2,
}

/// The MSNSLP bytes of one P2P chunk, or `None` for chunks of a data session
/// (file contents, acks) that cannot carry an INVITE.
pub fn slp_data(chunk: &[u8], version: Version) -> Option<&[u8]> {
    match version {
        Version::V1 => {
            let header = chunk.get(..48)?;
            let session = u32::from_le_bytes(header[0..4].try_into().ok()?);
            let len = u32::from_le_bytes(header[24..28].try_into().ok()?) as usize;
            if session != 0 {
                return None;
            }
            chunk.get(48..48 + len.min(chunk.len() - 48))
        }
        Version::V2 => {
            let hl = usize::from(*chunk.first()?);
            let ml = usize::from(u16::from_be_bytes(chunk.get(2..4)?.try_into().ok()?));
            let dh = chunk.get(hl..)?;
            let dhl = usize::from(*dh.first()?);
            let session = u32::from_be_bytes(dh.get(4..8)?.try_into().ok()?);
            if hl < 8 || dhl < 8 || session != 0 || ml < dhl {
                return None;
            }
            let end = (hl + ml).min(chunk.len());
            chunk.get(hl + dhl..end)
        }
    }
}

/// Collects the MSNSLP INVITE of one direction until its body is complete.
/// Each chunk is looked at once: the head is searched for its end only in
/// what is new, and the INVITE is parsed once, when all of it is there.
#[derive(Debug, Default, Clone)]
pub struct Assembler {
    pending: Option<Pending>,
}

#[derive(Debug, Clone)]
struct Pending {
    text: Vec<u8>,
    /// The INVITE's whole length, once its head is complete.
    needed: Option<usize>,
}

impl Assembler {
    /// Bytes kept of an unfinished INVITE.
    pub fn held(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.text.capacity())
    }

    /// Take the SLP bytes of the next chunk; the INVITE it completes, if any.
    pub fn push(&mut self, slp: &[u8]) -> Option<Invite> {
        let mut pending = match (self.pending.take(), memmem::find(slp, b"INVITE MSNMSGR:")) {
            // A new INVITE replaces an unfinished one.
            (_, Some(start)) => Pending {
                text: slp[start..].to_vec(),
                needed: None,
            },
            (Some(mut pending), None) => {
                pending.text.extend_from_slice(slp);
                pending
            }
            (None, None) => return None,
        };
        if pending.needed.is_none() {
            // The head's end may straddle the old bytes and the new.
            let from = pending.text.len().saturating_sub(slp.len() + 3);
            if let Some(at) = memmem::find(&pending.text[from..], b"\r\n\r\n") {
                let head_end = from + at;
                pending.needed = Some(head_end + 4 + content_length(&pending.text[..head_end]));
            }
        }
        match pending.needed {
            Some(needed) if pending.text.len() >= needed => match parse_invite(&pending.text) {
                Parsed::Complete(invite) => invite,
                Parsed::Incomplete => None,
            },
            _ if pending.text.len() <= MAX_SLP => {
                self.pending = Some(pending);
                None
            }
            _ => None,
        }
    }
}

/// The `Content-Length` of an SLP head (0 when absent).
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("Content-Length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
}

enum Parsed {
    Complete(Option<Invite>),
    Incomplete,
}

fn parse_invite(text: &[u8]) -> Parsed {
    let Some(head_end) = memmem::find(text, b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let body_len = content_length(&text[..head_end]);
    let body = &text[head_end + 4..];
    if body.len() < body_len {
        return Parsed::Incomplete;
    }
    let body = String::from_utf8_lossy(&body[..body_len]);
    let field = |name: &str| {
        body.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let Some(guid) = field("EUF-GUID") else {
        return Parsed::Complete(None);
    };
    if is_webcam_guid(&guid) {
        return Parsed::Complete(Some(Invite::Webcam));
    }
    if !guid.eq_ignore_ascii_case(FILE_TRANSFER) {
        // Display pictures, emoticons, winks, activities: not chat events.
        return Parsed::Complete(None);
    }
    let context = field("Context").and_then(|c| base64_decode(&c));
    Parsed::Complete(context.as_deref().and_then(file_context))
}

/// The file-transfer context: u32 length, u32 version, u64 file size, u32 type,
/// then the file name in UTF-16LE (at most 260 units, NUL-terminated), all
/// little-endian.
fn file_context(ctx: &[u8]) -> Option<Invite> {
    let size = u64::from_le_bytes(ctx.get(8..16)?.try_into().ok()?);
    let name_bytes = ctx.get(20..)?;
    let units: Vec<u16> = name_bytes
        .chunks_exact(2)
        .take(260)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let name = String::from_utf16_lossy(&units);
    Some(Invite::File { name, size })
}

/// Standard base64 (padding optional, whitespace ignored); `None` on any
/// other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn context_gives_name_and_size() {
        let mut ctx = vec![0u8; 638];
        ctx[0..4].copy_from_slice(&638u32.to_le_bytes());
        ctx[4..8].copy_from_slice(&3u32.to_le_bytes());
        ctx[8..16].copy_from_slice(&123456u64.to_le_bytes());
        for (i, u) in "naïve.txt".encode_utf16().enumerate() {
            ctx[20 + 2 * i..22 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        assert_eq!(
            file_context(&ctx),
            Some(Invite::File {
                name: "naïve.txt".into(),
                size: 123456
            })
        );
        assert_eq!(file_context(&ctx[..10]), None);
    }

    #[test]
    fn data_chunks_are_not_slp() {
        let mut chunk = vec![0u8; 60];
        chunk[0..4].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(slp_data(&chunk, Version::V1), None);
        assert_eq!(slp_data(&chunk[..20], Version::V1), None);
        assert_eq!(slp_data(&[], Version::V2), None);
    }
}
