//! SNAC, the unit a channel-2 FLAP carries: family, subtype, flags, request
//! id, and when flag 0x8000 is set a length-prefixed block to skip before the
//! body.

use super::tlv::Reader;

/// Family, subtype, flags and request id.
pub const HEADER_LEN: usize = 10;
const HAS_EXTRA: u16 = 0x8000;

pub const SERVICE: u16 = 0x0001;
pub const ICBM: u16 = 0x0004;
pub const CHAT: u16 = 0x000e;
pub const AUTH: u16 = 0x0017;

/// A SNAC split into the part copied as it is and the body.
#[derive(Debug, Clone, Copy)]
pub struct Snac<'a> {
    pub family: u16,
    pub subtype: u16,
    /// The header with its extra block: kept verbatim on a rewrite.
    pub head: &'a [u8],
    pub body: &'a [u8],
}

/// Family and subtype, from the first four bytes of a SNAC.
pub fn kind(data: &[u8]) -> Option<(u16, u16)> {
    let b = data.get(..4)?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

pub fn parse(data: &[u8]) -> Result<Snac<'_>, String> {
    let mut r = Reader::new(data);
    let family = r.u16("SNAC header")?;
    let subtype = r.u16("SNAC header")?;
    let flags = r.u16("SNAC header")?;
    r.u32("SNAC header")?;
    if flags & HAS_EXTRA != 0 {
        let n = r.u16("SNAC extra block length")?;
        r.bytes(usize::from(n), "SNAC extra block")?;
    }
    let at = r.position();
    Ok(Snac {
        family,
        subtype,
        head: &data[..at],
        body: &data[at..],
    })
}

/// A SNAC with no flags and request id 0, as the server sends unsolicited ones.
pub fn encode(family: u16, subtype: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&family.to_be_bytes());
    out.extend_from_slice(&subtype.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(body);
    out
}
