//! Per-block checksums: a CRC32C of every [`BLOCK`] bytes of a blob,
//! computed as the blob is stored and kept in its sidecar, so that every
//! block a volume serves is checked first. sha256 stays the value's
//! identity (and `verify --deep` re-hashes it); the CRCs are what lets a
//! reader never receive silently corrupt bytes between two verify runs.
//! CRC32C is computed by the CPU's own instruction, so checking costs a
//! small fraction of serving.

/// The block size the checksums cover (the last block may be shorter).
pub const BLOCK: u64 = 1 << 20;

/// Accumulates block checksums over a stream of bytes.
#[derive(Debug, Default)]
pub struct BlockSums {
    sums: Vec<u32>,
    current: u32,
    filled: u64,
}

impl BlockSums {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = ((BLOCK - self.filled) as usize).min(data.len());
            self.current = crc32c::crc32c_append(self.current, &data[..n]);
            self.filled += n as u64;
            data = &data[n..];
            if self.filled == BLOCK {
                self.sums.push(std::mem::take(&mut self.current));
                self.filled = 0;
            }
        }
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.sums.len() as u64 * BLOCK + self.filled
    }

    /// The sidecar's form: 8 hex digits a block, in order.
    pub fn finish(mut self) -> String {
        if self.filled > 0 {
            self.sums.push(self.current);
        }
        self.sums.iter().map(|s| format!("{s:08x}")).collect()
    }
}

/// The checksums of a blob of `size` bytes, from its sidecar's form;
/// `None` when they are malformed or do not cover exactly `size` bytes.
pub fn parse(hex: &str, size: u64) -> Option<Vec<u32>> {
    let blocks = size.div_ceil(BLOCK) as usize;
    if hex.len() != blocks * 8 {
        return None;
    }
    (0..blocks)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect()
}

/// The CRC32C of a whole blob of `size` bytes, from its block checksums
/// (combined, not recomputed); `None` when they are malformed. Every
/// answer about a blob carries it (`Key-Crc32c`), so it must cost little
/// whatever the size: each block is folded in by one multiplication with
/// a constant ([`BLOCK_SHIFT`]), about 50 ns, where a general combine
/// (`crc32c::crc32c_combine`) derives its operator anew each time, ~30 µs
/// — 30 ms of every read of a 1 GiB blob, a range read's included.
pub fn whole(hex: &str, size: u64) -> Option<u32> {
    let sums = parse(hex, size)?;
    let Some((first, rest)) = sums.split_first() else {
        return Some(0);
    };
    let mut crc = *first;
    for (i, sum) in rest.iter().enumerate() {
        let len = (size - (i as u64 + 1) * BLOCK).min(BLOCK);
        crc = combine(crc, *sum, len);
    }
    Some(crc)
}

/// The CRC32C polynomial, bit-reflected: bit 31 is the coefficient of
/// x^0, bit 0 that of x^31 (the order CRC32C's bits are processed in).
const POLY: u32 = 0x82f6_3b78;

/// `a · b` modulo [`POLY`], both in the reflected form.
const fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut i = 0;
    while i < 32 {
        if a & (1 << (31 - i)) != 0 {
            product ^= b;
        }
        // b · x
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        i += 1;
    }
    product
}

/// x^(8·n) modulo [`POLY`]: what appending `n` zero bytes does to a CRC
/// register (by squaring, from x^8).
const fn shift_op(mut n: u64) -> u32 {
    let mut op = 1 << 31; // x^0
    let mut square = 1 << 30; // x^1, squared three times: x^8, one byte
    let mut i = 0;
    while i < 3 {
        square = mul_mod(square, square);
        i += 1;
    }
    while n != 0 {
        if n & 1 != 0 {
            op = mul_mod(square, op);
        }
        square = mul_mod(square, square);
        n >>= 1;
    }
    op
}

/// [`shift_op`] of a whole block, worked out at compile time.
const BLOCK_SHIFT: u32 = shift_op(BLOCK);

/// The CRC32C of `a` followed by `b`, from their CRCs and `b`'s length.
/// (The CRC's initial and final inversions cancel out in this identity.)
fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let op = if len_b == BLOCK {
        BLOCK_SHIFT
    } else {
        shift_op(len_b)
    };
    mul_mod(op, crc_a) ^ crc_b
}

/// Whether `data`, block number `index` of a blob, matches its checksum.
pub fn check(sums: &[u32], index: usize, data: &[u8]) -> bool {
    sums.get(index) == Some(&crc32c::crc32c(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: stored sidecars must stay readable. CRC32C of
    /// "123456789" is 0xe3069283 (RFC 3720's check value).
    #[test]
    fn sums_are_stable_and_split_at_block_boundaries() {
        let mut s = BlockSums::default();
        s.update(b"1234");
        s.update(b"56789");
        assert_eq!(s.size(), 9);
        assert_eq!(s.finish(), "e3069283");
        assert_eq!(BlockSums::default().finish(), "", "no bytes, no blocks");

        let data: Vec<u8> = (0..BLOCK * 2 + 10).map(|i| (i % 251) as u8).collect();
        let mut whole = BlockSums::default();
        whole.update(&data);
        let mut pieces = BlockSums::default();
        for chunk in data.chunks(77_777) {
            pieces.update(chunk);
        }
        assert_eq!(pieces.size(), data.len() as u64);
        let (a, b) = (whole.finish(), pieces.finish());
        assert_eq!(a, b);
        let sums = parse(&a, data.len() as u64).unwrap();
        assert_eq!(sums.len(), 3);
        for (i, block) in data.chunks(BLOCK as usize).enumerate() {
            assert!(check(&sums, i, block));
        }
        let mut bad = data[..BLOCK as usize].to_vec();
        bad[1000] ^= 1;
        assert!(!check(&sums, 0, &bad));
        assert!(!check(&sums, 3, b"past the end"));
        assert_eq!(parse(&a, BLOCK), None, "wrong block count");
        // The whole value's CRC32C, combined from the blocks'.
        assert_eq!(super::whole(&a, data.len() as u64), Some(crc32c::crc32c(&data)));
        assert_eq!(super::whole("e3069283", 9), Some(0xe3069283));
        assert_eq!(super::whole("", 0), Some(0));
        assert_eq!(parse("zzzzzzzz", 1), None);
    }

    /// The combine agrees with the crc32c crate's general one and with
    /// hashing the concatenation, for lengths around the block size and
    /// small ones (a zero-length tail leaves the CRC as it was).
    #[test]
    fn combining_matches_hashing_the_concatenation() {
        let data: Vec<u8> = (0..3 * BLOCK as usize + 4321)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        for split in [
            0,
            1,
            7,
            4096,
            BLOCK as usize - 1,
            BLOCK as usize,
            BLOCK as usize + 1,
            2 * BLOCK as usize,
        ] {
            for end in [split, split + 1, split + 100, split + BLOCK as usize, data.len()] {
                let end = end.min(data.len());
                let (a, b) = (&data[..split], &data[split..end]);
                let (ca, cb) = (crc32c::crc32c(a), crc32c::crc32c(b));
                let expected = crc32c::crc32c(&data[..end]);
                assert_eq!(
                    combine(ca, cb, b.len() as u64),
                    expected,
                    "split {split}, end {end}"
                );
                assert_eq!(crc32c::crc32c_combine(ca, cb, b.len()), expected);
            }
        }
    }
}
