//! Searching bytes eight at a time, for the scans that run over every request: the
//! head's line endings and a JSON body's strings.

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// The offset of the first `a` or `b` in `s`. Each step tests eight bytes with the
/// zero-byte test of "Bit Twiddling Hacks" on the bytes XORed with each sought one: it
/// may flag a byte above a true match, never one below, so its lowest flag is exact.
#[inline]
pub fn find2(s: &[u8], a: u8, b: u8) -> Option<usize> {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let (wide_a, wide_b) = (ONES * u64::from(a), ONES * u64::from(b));
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let v = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let hit = zero(v ^ wide_a) | zero(v ^ wide_b);
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let mut rest = chunks.remainder().iter();
    rest.position(|&c| c == a || c == b).map(|k| at + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find2_finds_the_first() {
        let naive = |s: &[u8], a: u8, b: u8| s.iter().position(|&c| c == a || c == b);
        // The sought bytes, their neighbours and bytes with the high bit set, mostly
        // among plain ones so that a match comes late too.
        let alphabet = [
            b'"', b'\\', b'!', b'#', b'\r', b'\n', 0xA2, 0xDC, 0x80, 0, 0xFF,
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..40 {
            for _ in 0..200 {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let pick = (seed % 64) as usize;
                        alphabet.get(pick).copied().unwrap_or(b'x')
                    })
                    .collect();
                for (a, b) in [(b'"', b'\\'), (b'\r', b'\n'), (0, 0xFF)] {
                    assert_eq!(find2(&s, a, b), naive(&s, a, b), "{s:?}");
                }
            }
        }
    }
}
