//! OSCAR as the test peers write and strictly read it: FLAPs, SNACs, TLVs.
//! Independent of the proxy's parser, so a rewrite with a wrong length fails
//! here.

use std::io::{Read, Write};

use anyhow::{bail, ensure, Context};

pub const SIGN_ON: u8 = 1;
pub const SNAC: u8 = 2;

/// One FLAP as read.
#[derive(Debug, Clone)]
pub struct Flap {
    pub channel: u8,
    pub data: Vec<u8>,
}

impl Flap {
    /// Family, subtype and body of a channel-2 FLAP.
    pub fn snac(&self) -> anyhow::Result<(u16, u16, &[u8])> {
        ensure!(self.channel == SNAC, "FLAP on channel {}", self.channel);
        ensure!(self.data.len() >= 10, "SNAC shorter than its header");
        let flags = be16(&self.data, 4)?;
        let mut body = &self.data[10..];
        if flags & 0x8000 != 0 {
            let n = usize::from(be16(body, 0)?);
            body = body.get(2 + n..).context("SNAC extra block past the end")?;
        }
        Ok((be16(&self.data, 0)?, be16(&self.data, 2)?, body))
    }
}

pub fn be16(b: &[u8], at: usize) -> anyhow::Result<u16> {
    let b = b.get(at..at + 2).context("short read of a 16-bit field")?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

pub fn be32(b: &[u8], at: usize) -> anyhow::Result<u32> {
    let b = b.get(at..at + 4).context("short read of a 32-bit field")?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Read one FLAP; fails on anything that is not one.
pub fn read_flap(stream: &mut impl Read) -> anyhow::Result<Flap> {
    let mut header = [0u8; 6];
    stream.read_exact(&mut header)?;
    ensure!(header[0] == 0x2a, "FLAP starts with {:#04x}", header[0]);
    let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let mut data = vec![0; len];
    stream.read_exact(&mut data)?;
    Ok(Flap {
        channel: header[1],
        data,
    })
}

/// Writes FLAPs with consecutive sequence numbers.
pub struct FlapWriter<W: Write> {
    pub stream: W,
    seq: u16,
}

impl<W: Write> FlapWriter<W> {
    pub fn new(stream: W) -> Self {
        FlapWriter { stream, seq: 0x100 }
    }

    pub fn flap(&mut self, channel: u8, data: &[u8]) -> std::io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut out = vec![0x2a, channel];
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        self.stream.write_all(&out)
    }

    pub fn snac(&mut self, family: u16, subtype: u16, body: &[u8]) -> std::io::Result<()> {
        let mut data = family.to_be_bytes().to_vec();
        data.extend_from_slice(&subtype.to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        data.extend_from_slice(body);
        self.flap(SNAC, &data)
    }
}

pub fn tlv(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut out = ty.to_be_bytes().to_vec();
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Every TLV of a chain that must end with its last TLV.
pub fn tlvs(mut b: &[u8]) -> anyhow::Result<Vec<(u16, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let ty = be16(b, 0)?;
        let len = usize::from(be16(b, 2)?);
        let value = b.get(4..4 + len).context("TLV past the end of its chain")?;
        out.push((ty, value.to_vec()));
        b = &b[4 + len..];
    }
    Ok(out)
}

pub fn find(tlvs: &[(u16, Vec<u8>)], ty: u16) -> Option<&[u8]> {
    tlvs.iter()
        .find(|(t, _)| *t == ty)
        .map(|(_, v)| v.as_slice())
}

/// A string with an 8-bit length before it, and what follows.
pub fn string8(b: &[u8]) -> anyhow::Result<(&[u8], &[u8])> {
    let n = usize::from(*b.first().context("missing screen name")?);
    let s = b.get(1..1 + n).context("screen name past the end")?;
    Ok((s, &b[1 + n..]))
}

/// The charsets of a text fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Ascii = 0,
    Ucs2 = 2,
    Latin1 = 3,
}

/// TLV 0x0002 of a channel-1 message: a capabilities fragment and one text
/// fragment.
pub fn message_fragments(text: &str, charset: Charset) -> Vec<u8> {
    let bytes: Vec<u8> = match charset {
        Charset::Ascii => text.as_bytes().to_vec(),
        Charset::Ucs2 => ucs2_bytes(text),
        Charset::Latin1 => text.chars().map(|c| c as u32 as u8).collect(),
    };
    let mut out = vec![5, 1, 0, 1, 1, 1, 1];
    out.extend_from_slice(&((bytes.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(&(charset as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&bytes);
    out
}

/// The text of channel-1 message fragments, each in its charset.
pub fn fragments_text(mut b: &[u8]) -> anyhow::Result<String> {
    let mut text = String::new();
    while !b.is_empty() {
        let id = *b.first().context("fragment")?;
        let len = usize::from(be16(b, 2)?);
        let data = b
            .get(4..4 + len)
            .context("fragment past the end of its TLV")?;
        if id == 1 {
            let charset = be16(data, 0)?;
            let bytes = data.get(4..).context("text fragment header")?;
            match charset {
                2 => text.push_str(&ucs2_text(bytes)?),
                3 => text.extend(bytes.iter().map(|&b| char::from(b))),
                0 => text.push_str(std::str::from_utf8(bytes)?),
                other => bail!("charset {other}"),
            }
        }
        b = &b[4 + len..];
    }
    Ok(text)
}

pub fn ucs2_bytes(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// UCS-2BE (UTF-16BE) text; an odd length or a lone surrogate is an error.
pub fn ucs2_text(bytes: &[u8]) -> anyhow::Result<String> {
    ensure!(bytes.len().is_multiple_of(2), "odd UCS-2 length");
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16(&units)?)
}
