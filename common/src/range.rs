//! HTTP byte ranges (RFC 9110 §14): one `Range: bytes=…` spec, parsed and
//! resolved against a value's length.

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
    /// Parses a `Range` header value.
    pub fn parse(header: &str) -> Result<ByteRange, RangeError> {
        let spec = header
            .trim()
            .strip_prefix("bytes=")
            .ok_or(RangeError::Malformed)?
            .trim();
        if spec.contains(',') {
            return Err(RangeError::Multiple);
        }
        let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
        let num = |s: &str| -> Result<u64, RangeError> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RangeError::Malformed);
            }
            s.parse().map_err(|_| RangeError::Malformed)
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, true) => Err(RangeError::Malformed),
            (true, false) => Ok(ByteRange::Suffix(num(last)?)),
            (false, true) => Ok(ByteRange::From(num(first)?)),
            (false, false) => {
                let (first, last) = (num(first)?, num(last)?);
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
        for bad in [
            "",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
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
    }
}
