//! The few protocol-buffer rules the GG 11 packets need: a reader that checks
//! every length against the payload, and writers for the field kinds used.

use std::ops::Range;

/// One field of a message, with the bytes it occupies (key included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub raw: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const BYTES: u64 = 2;
const FIXED32: u64 = 5;

/// Every field of `buf`, or `None` if it is not a well-formed message
/// (groups, which nothing in Gadu-Gadu uses, count as malformed).
pub fn parse(buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).ok().filter(|&n| n > 0)?;
        let value = match key & 7 {
            VARINT => Value::Varint(varint(buf, &mut pos)?),
            FIXED64 => Value::Fixed64(u64::from_le_bytes(take(buf, &mut pos, 8)?.try_into().ok()?)),
            BYTES => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                Value::Bytes(take(buf, &mut pos, len)?)
            }
            FIXED32 => Value::Fixed32(u32::from_le_bytes(take(buf, &mut pos, 4)?.try_into().ok()?)),
            _ => return None,
        };
        fields.push(Field {
            number,
            value,
            raw: start..pos,
        });
    }
    Some(fields)
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(len).filter(|&end| end <= buf.len())?;
    let out = &buf[*pos..end];
    *pos = end;
    Some(out)
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The last occurrence of field `number`, as protocol buffers decide duplicates.
pub fn find<'f, 'a>(fields: &'f [Field<'a>], number: u32) -> Option<&'f Value<'a>> {
    fields
        .iter()
        .rev()
        .find(|f| f.number == number)
        .map(|f| &f.value)
}

pub fn bytes<'a>(fields: &[Field<'a>], number: u32) -> Option<&'a [u8]> {
    match find(fields, number)? {
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

pub fn fixed32(fields: &[Field<'_>], number: u32) -> Option<u32> {
    match find(fields, number)? {
        Value::Fixed32(v) => Some(*v),
        _ => None,
    }
}

pub fn fixed64(fields: &[Field<'_>], number: u32) -> Option<u64> {
    match find(fields, number)? {
        Value::Fixed64(v) => Some(*v),
        _ => None,
    }
}

pub fn uint(fields: &[Field<'_>], number: u32) -> Option<u64> {
    match find(fields, number)? {
        Value::Varint(v) => Some(*v),
        _ => None,
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire: u64) {
    put_varint(out, u64::from(number) << 3 | wire);
}

pub fn put_uint(out: &mut Vec<u8>, number: u32, v: u64) {
    put_key(out, number, VARINT);
    put_varint(out, v);
}

pub fn put_bytes(out: &mut Vec<u8>, number: u32, data: &[u8]) {
    put_key(out, number, BYTES);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

pub fn put_fixed32(out: &mut Vec<u8>, number: u32, v: u32) {
    put_key(out, number, FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_fields_read_back_with_their_ranges() {
        let mut buf = Vec::new();
        put_uint(&mut buf, 3, 300);
        put_bytes(&mut buf, 5, "zażółć".as_bytes());
        put_fixed32(&mut buf, 4, 0xdead_beef);
        buf.extend_from_slice(&[10 << 3 | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        let fields = parse(&buf).unwrap();
        assert_eq!(uint(&fields, 3), Some(300));
        assert_eq!(fields[0].raw, 0..3);
        assert_eq!(bytes(&fields, 5), Some("zażółć".as_bytes()));
        assert_eq!(fixed32(&fields, 4), Some(0xdead_beef));
        assert_eq!(fixed64(&fields, 10), Some(0x0807_0605_0403_0201));
        assert_eq!(fields.last().unwrap().raw.end, buf.len());
    }

    #[test]
    fn lengths_beyond_the_buffer_and_groups_are_malformed() {
        assert_eq!(parse(&[5 << 3 | 2, 0x7f, b'a']), None);
        assert_eq!(
            parse(&[
                5 << 3 | 2,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0x01
            ]),
            None
        );
        assert_eq!(parse(&[1 << 3 | 3]), None);
        assert_eq!(parse(&[0x80; 11]), None);
        assert_eq!(parse(&[0]), None);
        assert_eq!(parse(&[]), Some(Vec::new()));
    }
}
