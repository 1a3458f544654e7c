//! HTTP byte ranges (RFC 9110 §14): one `Range: bytes=…` spec, parsed and
//! resolved against a value's length, and the `If-Range` check that says
//! whether to honour it.

use std::ops::Range;

/// One byte range as the client asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last`, both inclusive.
    Bounded { first: u64, last: u64 },
    /// `bytes=first-`: from `first` to the end.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// A `Range` header Trove does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `bytes=…`, or not numbers; RFC 9110 lets a server ignore these,
    /// and Trove does (the whole value is sent).
    #[error("malformed Range header")]
    Malformed,
    /// `bytes=0-1,5-6`: multipart answers are not supported.
    #[error("multiple ranges are not supported; ask for one range per request")]
    Multiple,
}

/// The range cannot be served for a value of this length (`416`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range not satisfiable for a value of {len} bytes")]
pub struct Unsatisfiable {
    pub len: u64,
}

impl ByteRange {
    /// Parses a `Range` header value. The unit is case-insensitive, empty
    /// list elements (`bytes=, 0-5`) are ignored, and a position too large
    /// for a `u64` saturates: a first byte that far is past the end of any
    /// value (unsatisfiable), a last byte that far means "to the end"
    /// (RFC 9110 §14.1.1).
    pub fn parse(header: &str) -> Result<ByteRange, RangeError> {
        let (unit, set) = header.split_once('=').ok_or(RangeError::Malformed)?;
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return Err(RangeError::Malformed);
        }
        let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
        let spec = specs.next().ok_or(RangeError::Malformed)?;
        if specs.next().is_some() {
            return Err(RangeError::Multiple);
        }
        let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
        let (first, last) = (first.trim(), last.trim());
        match (first.is_empty(), last.is_empty()) {
            (true, true) => Err(RangeError::Malformed),
            (true, false) => Ok(ByteRange::Suffix(position(last)?)),
            (false, true) => Ok(ByteRange::From(position(first)?)),
            (false, false) => {
                let (first, last) = (position(first)?, position(last)?);
                if first > last {
                    return Err(RangeError::Malformed);
                }
                Ok(ByteRange::Bounded { first, last })
            }
        }
    }

    /// The byte offsets to send for a value of `len` bytes. A `last` past
    /// the end is clamped; a start past the end, or an empty suffix, is
    /// unsatisfiable.
    pub fn resolve(self, len: u64) -> Result<Range<u64>, Unsatisfiable> {
        let unsat = Unsatisfiable { len };
        match self {
            ByteRange::Bounded { first, last } if first < len => Ok(first..last.min(len - 1) + 1),
            ByteRange::From(first) if first < len => Ok(first..len),
            ByteRange::Suffix(n) if n > 0 && len > 0 => Ok(len.saturating_sub(n)..len),
            _ => Err(unsat),
        }
    }
}

/// A byte position: ASCII digits only, saturating at `u64::MAX`.
fn position(s: &str) -> Result<u64, RangeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    Ok(s.parse().unwrap_or(u64::MAX))
}

/// What an `If-Range` header (RFC 9110 §13.1.5) says about a stored value.
///
/// The `Range` is honoured only when the validator matches the current
/// representation: an entity tag by strong comparison (a weak tag never
/// matches), or an HTTP date equal to its `Last-Modified`. Anything else —
/// another tag, another date, a value that is neither — means the client's
/// partial copy is of something else, and it must get the whole value
/// (`200`), never a range of the new one spliced onto the old.
pub fn if_range_matches(if_range: &str, etag: &str, last_modified: std::time::SystemTime) -> bool {
    let v = if_range.trim();
    if v.starts_with('"') || v.starts_with("W/") {
        return !v.starts_with("W/") && v == etag;
    }
    // Dates are compared to the second, the resolution of an HTTP date.
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).ok();
    match httpdate::parse_http_date(v) {
        Ok(date) => secs(date).is_some() && secs(date) == secs(last_modified),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            ByteRange::parse("bytes=0-99"),
            Ok(ByteRange::Bounded { first: 0, last: 99 })
        );
        assert_eq!(ByteRange::parse("bytes=5-"), Ok(ByteRange::From(5)));
        assert_eq!(ByteRange::parse("bytes=-10"), Ok(ByteRange::Suffix(10)));
        assert_eq!(
            ByteRange::parse(" bytes= 1 - 2 "),
            Ok(ByteRange::Bounded { first: 1, last: 2 })
        );
        assert_eq!(ByteRange::parse("bytes=0-1,3-4"), Err(RangeError::Multiple));
        assert_eq!(ByteRange::parse("bytes=0-1, ,3-4"), Err(RangeError::Multiple));
        // The unit is case-insensitive; empty list elements are ignored.
        let first_six = Ok(ByteRange::Bounded { first: 0, last: 5 });
        for ok in [
            "Bytes=0-5",
            "BYTES=0-5",
            "bytes=, 0-5",
            "bytes=0-5,",
            "bytes=,,0-5, ,",
        ] {
            assert_eq!(ByteRange::parse(ok), first_six, "{ok}");
        }
        // Positions past u64 saturate: a first byte that far is never in a
        // value, a last byte that far means "to the end".
        assert_eq!(
            ByteRange::parse("bytes=99999999999999999999-"),
            Ok(ByteRange::From(u64::MAX))
        );
        assert_eq!(
            ByteRange::parse("bytes=2-99999999999999999999"),
            Ok(ByteRange::Bounded {
                first: 2,
                last: u64::MAX
            })
        );
        assert_eq!(
            ByteRange::parse("bytes=-99999999999999999999"),
            Ok(ByteRange::Suffix(u64::MAX))
        );
        for bad in [
            "",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "items=0-1",
            "bytes 0-1",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=+1-2",
            "bytes=99999999999999999999-1",
        ] {
            assert_eq!(ByteRange::parse(bad), Err(RangeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn resolves() {
        let b = |first, last| ByteRange::Bounded { first, last };
        assert_eq!(b(0, 4).resolve(5), Ok(0..5));
        assert_eq!(b(2, 5).resolve(5), Ok(2..5), "past the end is clamped");
        assert_eq!(b(5, 9).resolve(5), Err(Unsatisfiable { len: 5 }));
        assert_eq!(ByteRange::From(4).resolve(5), Ok(4..5));
        assert_eq!(ByteRange::From(5).resolve(5), Err(Unsatisfiable { len: 5 }));
        assert_eq!(ByteRange::Suffix(2).resolve(5), Ok(3..5));
        assert_eq!(ByteRange::Suffix(50).resolve(5), Ok(0..5));
        assert_eq!(ByteRange::Suffix(0).resolve(5), Err(Unsatisfiable { len: 5 }));
        assert_eq!(ByteRange::Suffix(1).resolve(0), Err(Unsatisfiable { len: 0 }));
        let huge = |s| ByteRange::parse(s).unwrap();
        assert_eq!(
            huge("bytes=99999999999999999999-").resolve(5),
            Err(Unsatisfiable { len: 5 })
        );
        assert_eq!(huge("bytes=2-99999999999999999999").resolve(5), Ok(2..5));
        assert_eq!(huge("bytes=-99999999999999999999").resolve(5), Ok(0..5));
    }

    #[test]
    fn if_range() {
        use std::time::{Duration, UNIX_EPOCH};
        let etag = "\"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"";
        let modified = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert!(if_range_matches(etag, etag, modified));
        assert!(if_range_matches(&format!(" {etag} "), etag, modified));
        assert!(
            !if_range_matches(&format!("W/{etag}"), etag, modified),
            "weak tags never match"
        );
        assert!(!if_range_matches("\"0000\"", etag, modified));
        assert!(!if_range_matches(&etag[..20], etag, modified));
        // Last-Modified of that instant, to the second.
        assert!(if_range_matches("Tue, 14 Nov 2023 22:13:20 GMT", etag, modified));
        assert!(!if_range_matches("Tue, 14 Nov 2023 22:13:21 GMT", etag, modified));
        assert!(!if_range_matches("Tue, 14 Nov 2023 22:13:19 GMT", etag, modified));
        assert!(!if_range_matches("yesterday", etag, modified));
        assert!(!if_range_matches("", etag, modified));
    }
}
