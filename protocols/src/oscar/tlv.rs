//! TLV chains: a 16-bit type, a 16-bit length and that many bytes, repeated.
//! A TLV whose length runs past the end of what contains it is an error, not
//! a short read: the container's own length is already known.

/// One TLV of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub ty: u16,
    pub value: &'a [u8],
}

/// Every TLV of `chain`, which must end exactly with its last TLV.
pub fn chain(chain: &[u8]) -> Result<Vec<Tlv<'_>>, String> {
    let mut reader = Reader::new(chain);
    let mut out = Vec::new();
    while !reader.is_empty() {
        out.push(reader.tlv()?);
    }
    Ok(out)
}

/// The value of the first TLV of type `ty`.
pub fn find<'a>(tlvs: &[Tlv<'a>], ty: u16) -> Option<&'a [u8]> {
    tlvs.iter().find(|t| t.ty == ty).map(|t| t.value)
}

/// Append one TLV to `out`; `None` when the value does not fit a 16-bit length.
pub fn put(out: &mut Vec<u8>, ty: u16, value: &[u8]) -> Option<()> {
    let len = u16::try_from(value.len()).ok()?;
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Some(())
}

/// `chain` with the value of its first TLV of type `ty` replaced (or the TLV
/// appended when there is none), every other TLV kept in place.
pub fn replace(chain: &[Tlv<'_>], ty: u16, value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut done = false;
    for tlv in chain {
        if tlv.ty == ty && !done {
            put(&mut out, ty, value)?;
            done = true;
        } else {
            put(&mut out, tlv.ty, tlv.value)?;
        }
    }
    if !done {
        put(&mut out, ty, value)?;
    }
    Some(out)
}

/// A cursor over big-endian fields whose every read is bounds-checked; the
/// error names what was cut short.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at.min(self.bytes.len())..]
    }

    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.at.min(self.bytes.len());
        if n > left {
            return Err(format!(
                "{what} of {n} bytes overruns its container ({left} bytes left)"
            ));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u16_le(&mut self, what: &str) -> Result<u16, String> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u32_le(&mut self, what: &str) -> Result<u32, String> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A string with an 8-bit length before it (a screen name).
    pub fn string8(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u8(what)?;
        self.bytes(usize::from(n), what)
    }

    pub fn tlv(&mut self) -> Result<Tlv<'a>, String> {
        let ty = self.u16("TLV type")?;
        let len = self.u16("TLV length")?;
        let value = self.bytes(usize::from(len), &format!("TLV {ty:#06x}"))?;
        Ok(Tlv { ty, value })
    }

    /// `count` TLVs (a user-info block).
    pub fn tlvs(&mut self, count: u16) -> Result<Vec<Tlv<'a>>, String> {
        (0..count).map(|_| self.tlv()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_read_and_rebuilt() {
        let bytes = [0, 1, 0, 2, b'h', b'i', 0, 5, 0, 0];
        let tlvs = chain(&bytes).unwrap();
        assert_eq!(find(&tlvs, 1), Some(&b"hi"[..]));
        assert_eq!(find(&tlvs, 5), Some(&b""[..]));
        let again = replace(&tlvs, 1, b"hey").unwrap();
        assert_eq!(again, [0, 1, 0, 3, b'h', b'e', b'y', 0, 5, 0, 0]);
    }

    #[test]
    fn a_tlv_past_the_end_of_its_chain_is_an_error() {
        let e = chain(&[0, 2, 0, 9, 1, 2]).unwrap_err();
        assert_eq!(
            e,
            "TLV 0x0002 of 9 bytes overruns its container (2 bytes left)"
        );
        assert!(chain(&[0, 2, 0]).is_err());
    }
}
