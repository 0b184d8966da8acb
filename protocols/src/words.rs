//! Text looked at eight bytes at a time, one `u64` word each (SWAR): the
//! file sink's and the journal's scans for the few bytes they must treat
//! apart, which most text has none of, and the IRC core's read of a command.

/// `0x01` in every byte.
pub const ONES: u64 = u64::from_ne_bytes([1; 8]);
/// The high bit of every byte.
pub const HIGH: u64 = ONES * 0x80;

/// The high bit of each byte of `word` that is `byte`, the other bits clear
/// (exactly: no carry runs from one byte into the next).
pub fn equal_bytes(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * byte as u64);
    let low = ONES * 0x7f;
    !(((x & low) + low) | x | low)
}

/// The eight bytes of `bytes` from `at` as a word, byte `at` its lowest (so a
/// bit's position over eight is the byte's offset); past the end, spaces.
pub fn word_at(bytes: &[u8], at: usize) -> u64 {
    let rest = &bytes[at..];
    let word = match rest.first_chunk::<8>() {
        Some(word) => *word,
        None => {
            let mut word = [b' '; 8];
            word[..rest.len()].copy_from_slice(rest);
            word
        }
    };
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_marks_exactly_the_bytes_that_are_equal() {
        for byte in [0u8, b'\t', b'\\', 0x7f, 0x80, 0xff] {
            for at in 0..8 {
                let mut bytes = [byte.wrapping_add(1); 8];
                bytes[at] = byte;
                let found = equal_bytes(u64::from_le_bytes(bytes), byte);
                assert_eq!(found, 0x80 << (8 * at), "{byte:#x} at {at}");
            }
        }
    }

    #[test]
    fn a_short_last_word_is_padded_with_spaces() {
        assert_eq!(word_at(b"0123456789", 8), u64::from_le_bytes(*b"89      "));
        assert_eq!(word_at(b"01234567", 0), u64::from_le_bytes(*b"01234567"));
    }
}
