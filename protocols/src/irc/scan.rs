//! The IRC core's byte scans, 16 bytes at a time: the line ends of a read as
//! a bitmap, and the first space of a line's prefix. Lines are short (about
//! 90 bytes in bulk traffic), so a library search per line cost more in its
//! setup than in its scan: about 85 instructions a line for the line end.

/// The line ends of a read: one bit per byte, 64 bytes to a word, set at
/// each LF.
#[derive(Default)]
pub(super) struct LineMap {
    lf: Vec<u64>,
}

impl LineMap {
    /// Maps the LFs of `bytes`. True when every peer reads each of its lines
    /// alike: none of the bytes is a NUL and every CR comes right before an
    /// LF (see `readings` in the core).
    pub fn map(&mut self, bytes: &[u8]) -> bool {
        self.lf.clear();
        let blocks = bytes.chunks_exact(64);
        let tail = blocks.remainder();
        // A CR in a block's last byte has its LF, if any, in the next block.
        let (mut stray_cr, mut cr_last) = (0u64, 0u64);
        let mut note = |(lf, cr): (u64, u64)| {
            stray_cr |= cr_last & !lf & 1;
            stray_cr |= cr & !(lf >> 1) & !(1 << 63);
            cr_last = cr >> 63;
            lf
        };
        self.lf.extend(
            blocks.map(|block| note(block_masks(block.try_into().expect("64-byte block")))),
        );
        if !tail.is_empty() {
            // Zeros past the end: neither an LF nor a CR.
            let mut padded = [0; 64];
            padded[..tail.len()].copy_from_slice(tail);
            self.lf.push(note(block_masks(&padded)));
        }
        stray_cr |= cr_last;
        stray_cr == 0 && memchr::memchr(0, bytes).is_none()
    }

    /// The ends of the mapped lines (one past each LF), in order.
    pub fn ends(&self) -> Ends<'_> {
        Ends {
            words: &self.lf,
            word: 0,
            bits: self.lf.first().copied().unwrap_or(0),
        }
    }

    /// How many lines end past `from`.
    pub fn count_from(&self, from: usize) -> usize {
        let (word, bit) = (from / 64, from % 64);
        let Some(&first) = self.lf.get(word) else {
            return 0;
        };
        let rest: u32 = self.lf[word + 1..].iter().map(|w| w.count_ones()).sum();
        ((first >> bit).count_ones() + rest) as usize
    }
}

/// Iterator over the line ends of a [`LineMap`].
pub(super) struct Ends<'a> {
    words: &'a [u64],
    word: usize,
    bits: u64,
}

impl Iterator for Ends<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            self.word += 1;
            self.bits = *self.words.get(self.word)?;
        }
        let bit = self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(self.word * 64 + bit + 1)
    }
}

/// Where the first space of `bytes` is: a line's prefix is a few dozen
/// bytes, one to three looks of 16.
pub(super) fn first_space(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(16);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let spaces = eq_mask(chunk.try_into().expect("16-byte chunk"), b' ');
        if spaces != 0 {
            return Some(i * 16 + spaces.trailing_zeros() as usize);
        }
    }
    let tail = chunks.remainder();
    let at = tail.iter().position(|&b| b == b' ')?;
    Some(bytes.len() - tail.len() + at)
}

/// The LFs and the CRs of a 64-byte block, a bit per byte.
fn block_masks(block: &[u8; 64]) -> (u64, u64) {
    let (mut lf, mut cr) = (0, 0);
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        let chunk = chunk.try_into().expect("16-byte chunk");
        lf |= u64::from(eq_mask(chunk, b'\n')) << (16 * i);
        cr |= u64::from(eq_mask(chunk, b'\r')) << (16 * i);
    }
    (lf, cr)
}

/// Bit `i` set when byte `i` of `chunk` is `byte`: one compare of all 16
/// with SSE2, which every x86_64 processor has.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn eq_mask(chunk: &[u8; 16], byte: u8) -> u16 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    // SAFETY: SSE2 is part of the x86_64 baseline, and the load reads the
    // 16 bytes of `chunk` (an unaligned load).
    unsafe {
        let bytes = _mm_loadu_si128(chunk.as_ptr().cast());
        let equal = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(byte as i8));
        _mm_movemask_epi8(equal) as u16
    }
}

/// Bit `i` set when byte `i` of `chunk` is `byte`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn eq_mask(chunk: &[u8; 16], byte: u8) -> u16 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | u16::from(b == byte) << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes rich in LFs, CRs, NULs and spaces, from a small generator.
    fn sample(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"ab \r\n\0xyz"[(*seed >> 33) as usize % 9]
            })
            .collect()
    }

    #[test]
    fn the_map_finds_every_line_end_and_every_stray_cr() {
        let mut seed = 7;
        let mut map = LineMap::default();
        for len in (0..200).chain([1000, 4096, 65536]) {
            for _ in 0..20 {
                let mut bytes = sample(&mut seed, len);
                let alike = map.map(&bytes);
                let ends: Vec<usize> = bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(at, _)| at + 1)
                    .collect();
                assert_eq!(map.ends().collect::<Vec<_>>(), ends);
                assert_eq!(map.count_from(0), ends.len());
                if let Some(&end) = ends.get(ends.len() / 2) {
                    assert_eq!(map.count_from(end), ends.len() - ends.len() / 2 - 1);
                }
                let expected = !bytes.contains(&0)
                    && bytes
                        .iter()
                        .enumerate()
                        .all(|(at, &b)| b != b'\r' || bytes.get(at + 1) == Some(&b'\n'));
                assert_eq!(alike, expected, "{bytes:?}");
                // Without NULs, whether a CR is stray decides alone, also
                // across the 64-byte blocks.
                bytes.retain(|&b| b != 0);
                let expected = bytes
                    .iter()
                    .enumerate()
                    .all(|(at, &b)| b != b'\r' || bytes.get(at + 1) == Some(&b'\n'));
                assert_eq!(map.map(&bytes), expected, "{bytes:?}");
            }
        }
    }

    #[test]
    fn the_first_space_is_found_at_any_distance() {
        for len in 0..80 {
            for at in 0..=len {
                let mut bytes = vec![b'x'; len];
                if at < len {
                    bytes[at] = b' ';
                    bytes.extend_from_slice(b" later");
                }
                let expected = (at < len).then_some(at);
                assert_eq!(first_space(&bytes), expected, "{len} {at}");
            }
        }
    }
}
