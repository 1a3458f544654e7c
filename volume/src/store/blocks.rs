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
/// (combined, not recomputed); `None` when they are malformed.
pub fn whole(hex: &str, size: u64) -> Option<u32> {
    let sums = parse(hex, size)?;
    // The first block's CRC is the running CRC so far: combining costs
    // far more than hashing a small value, so a one-block blob (every
    // small write's answer) combines nothing.
    let Some((first, rest)) = sums.split_first() else {
        return Some(0);
    };
    let mut crc = *first;
    for (i, sum) in rest.iter().enumerate() {
        let len = (size - (i as u64 + 1) * BLOCK).min(BLOCK) as usize;
        crc = crc32c::crc32c_combine(crc, *sum, len);
    }
    Some(crc)
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
        assert_eq!(s.finish(), "e3069283");
        assert_eq!(BlockSums::default().finish(), "", "no bytes, no blocks");

        let data: Vec<u8> = (0..BLOCK * 2 + 10).map(|i| (i % 251) as u8).collect();
        let mut whole = BlockSums::default();
        whole.update(&data);
        let mut pieces = BlockSums::default();
        for chunk in data.chunks(77_777) {
            pieces.update(chunk);
        }
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
}
