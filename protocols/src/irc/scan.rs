//! The IRC core's byte scans, 16 bytes at a time: the line ends of a read as
//! a bitmap, and the short searches within a line (the end of its prefix, its
//! parameters). Lines are short (about 90 bytes in bulk traffic), so a library
//! search per line cost more in its setup than in its scan: about 85
//! instructions a line for the line end.

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
        // Each block is looked at with the byte after it (a CR's LF may be
        // the next block's first byte), so the last one, 1 to 64 bytes, is
        // copied out and padded with a byte that is none of LF, CR and NUL.
        let last = bytes.len().saturating_sub(1) / 64 * 64;
        let mut odd = false;
        self.lf.extend((0..last / 64).map(|i| {
            let block = bytes[64 * i..][..65]
                .try_into()
                .expect("a block and a byte");
            let (lf, odd_block) = scan_block(block);
            odd |= odd_block;
            lf
        }));
        if last < bytes.len() {
            let mut padded = [b'x'; 65];
            padded[..bytes.len() - last].copy_from_slice(&bytes[last..]);
            let (lf, odd_block) = scan_block(&padded);
            odd |= odd_block;
            self.lf.push(lf);
        }
        !odd
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

/// Where the first `byte` of `bytes` is. For the few dozen bytes of a
/// prefix or a parameter, where a library search costs more to set up than
/// to run: one to three looks of 16.
pub(super) fn find(byte: u8, bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(16);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let found = eq_mask(chunk.try_into().expect("16-byte chunk"), byte);
        if found != 0 {
            return Some(i * 16 + found.trailing_zeros() as usize);
        }
    }
    let tail = chunks.remainder();
    let at = tail.iter().position(|&b| b == byte)?;
    Some(bytes.len() - tail.len() + at)
}

/// Where the last `byte` of `bytes` is, looked for as [`find`] does.
pub(super) fn rfind(byte: u8, bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.rchunks_exact(16);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let found = eq_mask(chunk.try_into().expect("16-byte chunk"), byte);
        if found != 0 {
            return Some(bytes.len() - 16 * (i + 1) + 15 - found.leading_zeros() as usize);
        }
    }
    chunks.remainder().iter().rposition(|&b| b == byte)
}

/// The LFs of the first 64 bytes of `block`, a bit per byte, and whether
/// any of them is a NUL or a CR not followed by an LF (the 65th byte is the
/// one after the last).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn scan_block(block: &[u8; 65]) -> (u64, bool) {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86_64 baseline, and every load reads 16
    // of the 65 bytes of `block` (unaligned loads, the last at 49).
    unsafe {
        let (lf, cr, nul) = (
            _mm_set1_epi8(b'\n' as i8),
            _mm_set1_epi8(b'\r' as i8),
            _mm_setzero_si128(),
        );
        let (mut lfs, mut odd) = (0, _mm_setzero_si128());
        for i in 0..4 {
            let bytes = _mm_loadu_si128(block[16 * i..].as_ptr().cast());
            let next = _mm_loadu_si128(block[16 * i + 1..].as_ptr().cast());
            let is_lf = _mm_cmpeq_epi8(bytes, lf);
            lfs |= u64::from(_mm_movemask_epi8(is_lf) as u16) << (16 * i);
            let stray_cr = _mm_andnot_si128(_mm_cmpeq_epi8(next, lf), _mm_cmpeq_epi8(bytes, cr));
            odd = _mm_or_si128(odd, _mm_or_si128(stray_cr, _mm_cmpeq_epi8(bytes, nul)));
        }
        (lfs, _mm_movemask_epi8(odd) != 0)
    }
}

/// The LFs of the first 64 bytes of `block`, a bit per byte, and whether
/// any of them is a NUL or a CR not followed by an LF.
#[cfg(not(target_arch = "x86_64"))]
fn scan_block(block: &[u8; 65]) -> (u64, bool) {
    let mut lfs = 0;
    let mut odd = false;
    for (i, pair) in block.windows(2).enumerate() {
        lfs |= u64::from(pair[0] == b'\n') << i;
        odd |= pair[0] == 0 || (pair[0] == b'\r' && pair[1] != b'\n');
    }
    (lfs, odd)
}

/// Bit `i` set when byte `i` of `chunk` is `byte`: one compare of all 16
/// with SSE2.
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
    fn the_first_and_the_last_are_found_at_any_distance() {
        for len in 0..80 {
            for at in 0..=len {
                let mut bytes = vec![b'x'; len];
                if at < len {
                    bytes[at] = b' ';
                }
                let expected = (at < len).then_some(at);
                assert_eq!(find(b' ', &bytes), expected, "{len} {at}");
                assert_eq!(rfind(b' ', &bytes), expected, "{len} {at}");
                // Another of them on the far side of each.
                let mut twice = bytes.clone();
                twice.extend_from_slice(b" later");
                assert_eq!(find(b' ', &twice), Some(at.min(len)), "{len} {at}");
                let mut twice = b"earlier ".to_vec();
                twice.extend_from_slice(&bytes);
                assert_eq!(
                    rfind(b' ', &twice),
                    Some(expected.map_or(7, |at| at + 8)),
                    "{len} {at}"
                );
            }
        }
    }
}
