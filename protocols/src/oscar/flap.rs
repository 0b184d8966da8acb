//! FLAP, the outer frame of every OSCAR connection: `0x2a`, a channel byte, a
//! 16-bit sequence number and a 16-bit length of the data that follows.

pub const START: u8 = 0x2a;
pub const HEADER_LEN: usize = 6;

/// Channel 1: the sign-on (a 32-bit version, then TLVs).
pub const SIGN_ON: u8 = 1;
/// Channel 2: one SNAC.
pub const SNAC: u8 = 2;
/// Channel 4: the sign-off (the old ICQ login reply carries the cookie here).
pub const SIGN_OFF: u8 = 4;
/// The highest channel in use (5: keep-alive).
const LAST_CHANNEL: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub channel: u8,
    pub seq: u16,
    /// Length of the data after the header.
    pub len: usize,
}

/// Why bytes cannot be the start of a FLAP.
pub fn check_start(bytes: &[u8]) -> Result<(), String> {
    match bytes {
        [] => Ok(()),
        [first, ..] if *first != START => Err(format!(
            "OSCAR: byte {first:#04x} where a FLAP must start (0x2a): not an OSCAR stream"
        )),
        [_, channel, ..] if *channel == 0 || *channel > LAST_CHANNEL => Err(format!(
            "OSCAR: FLAP on unknown channel {channel}: not an OSCAR stream"
        )),
        _ => Ok(()),
    }
}

/// The header at the start of `bytes`, once all six bytes are there (and
/// [`check_start`] accepted them).
pub fn header(bytes: &[u8]) -> Option<Header> {
    let h = bytes.get(..HEADER_LEN)?;
    Some(Header {
        channel: h[1],
        seq: u16::from_be_bytes([h[2], h[3]]),
        len: usize::from(u16::from_be_bytes([h[4], h[5]])),
    })
}

/// A FLAP around `data`; `None` when the data does not fit its 16-bit length.
pub fn encode(channel: u8, seq: u16, data: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(data.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(&[START, channel]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Some(out)
}
