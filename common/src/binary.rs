//! The primitives of Trove's compact binary formats (the master's index
//! records, the volumes' listing frames): LEB128 varints, length-prefixed
//! bytes, and digests stored as raw bytes when they are hex.
//!
//! A digest is one byte `n`, then: nothing when `n` is 0 (empty); `n` raw
//! bytes when `n` is 1 to 127 (the text was lower-case hex, so a sha256
//! costs 33 bytes); for 128, the text itself, length-prefixed (anything
//! else, so any string round-trips).
//!
//! Readers take from a `&mut &[u8]` and fail with
//! [`RecordError::Corrupt`] — never panic — on bytes cut short or damaged.

use crate::record::RecordError;

/// A digest's first byte: 0 empty, 1..=[`DIGEST_RAW_MAX`] that many raw
/// bytes, [`DIGEST_TEXT`] text.
const DIGEST_RAW_MAX: usize = 127;
const DIGEST_TEXT: u8 = 128;

/// The error of a damaged encoding, saying what was wrong.
pub fn corrupt(what: &str) -> RecordError {
    RecordError::Corrupt(what.to_string())
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Lower-case hex of even length (what `hex::encode` makes) is stored as
/// raw bytes; anything else as text, so that it reads back unchanged.
pub fn put_digest(out: &mut Vec<u8>, text: &str) {
    let hex = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hex && text.len().is_multiple_of(2) && text.len() / 2 <= DIGEST_RAW_MAX {
        // The empty text is the 0 of this case.
        out.push((text.len() / 2) as u8);
        out.extend_from_slice(&hex::decode(text).expect("checked to be hex"));
    } else {
        out.push(DIGEST_TEXT);
        put_bytes(out, text.as_bytes());
    }
}

pub fn take_u8(input: &mut &[u8]) -> Result<u8, RecordError> {
    let (&b, rest) = input.split_first().ok_or_else(|| corrupt("record cut short"))?;
    *input = rest;
    Ok(b)
}

pub fn take_varint(input: &mut &[u8]) -> Result<u64, RecordError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = take_u8(input)?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt("varint longer than 64 bits"))
}

pub fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], RecordError> {
    let len = usize::try_from(take_varint(input)?).map_err(|_| corrupt("length too large"))?;
    if input.len() < len {
        return Err(corrupt("record cut short"));
    }
    let (bytes, rest) = input.split_at(len);
    *input = rest;
    Ok(bytes)
}

pub fn take_string(input: &mut &[u8]) -> Result<String, RecordError> {
    String::from_utf8(take_bytes(input)?.to_vec()).map_err(|_| corrupt("text is not UTF-8"))
}

pub fn take_digest(input: &mut &[u8]) -> Result<String, RecordError> {
    match take_u8(input)? {
        DIGEST_TEXT => take_string(input),
        n if n as usize <= DIGEST_RAW_MAX => {
            let n = n as usize;
            if input.len() < n {
                return Err(corrupt("record cut short"));
            }
            let (raw, rest) = input.split_at(n);
            *input = rest;
            Ok(hex::encode(raw))
        }
        t => Err(corrupt(&format!("unknown digest tag {t}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_leb128() {
        for (v, bytes) in [
            (0u64, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
        ] {
            let mut out = vec![];
            put_varint(&mut out, v);
            assert_eq!(out, bytes);
            assert_eq!(take_varint(&mut &out[..]).unwrap(), v);
        }
        let mut max = vec![];
        put_varint(&mut max, u64::MAX);
        assert_eq!(take_varint(&mut &max[..]).unwrap(), u64::MAX);
        assert!(take_varint(&mut &[0xff; 11][..]).is_err());
    }

    #[test]
    fn digests_round_trip_as_raw_or_text() {
        for text in ["", "00ff", "ABC", "abc", &"ab".repeat(128)] {
            let mut out = vec![];
            put_digest(&mut out, text);
            let mut input = &out[..];
            assert_eq!(take_digest(&mut input).unwrap(), text);
            assert!(input.is_empty());
        }
        let mut raw = vec![];
        put_digest(&mut raw, "00ff");
        assert_eq!(raw, [2, 0x00, 0xff]);
    }
}
