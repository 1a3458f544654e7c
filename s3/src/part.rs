//! `partNumber` on GetObject and HeadObject: a ranged read of one part of
//! an object completed by a multipart upload.
//!
//! The master keeps a completed upload's part sizes in the object's record
//! (CompleteMultipartUpload composes with `Trove-Keep-Parts`), and answers
//! a read that asks `Trove-Part: N` with part N's offset and size beside
//! the part count ([`trove_client::Client::stat_part`]). The answer is the
//! part's bytes, `206` with their `Content-Range`, and
//! `x-amz-mp-parts-count`, as S3 does. An object with no kept parts (a
//! single PUT, a copy) is one part: `partNumber=1` is the whole object
//! (still `206`, as S3 answers), any other number is `InvalidPartNumber`.
//!
//! Parts are numbered by their position in the completed object (1 to the
//! part count), as MinIO does: an upload completed with part numbers that
//! have gaps is read as parts 1, 2, … all the same.

use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use std::ops::Range;
use trove_client::Stat;

/// The largest part number S3 accepts.
pub const MAX_PART: i32 = 10_000;

/// Part `n` of the object `stat` describes: its byte range, and the
/// object's part count when it was completed by a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub range: Range<u64>,
    pub count: Option<i32>,
}

/// The `Content-Range` of an answer carrying `range` of an object of
/// `size` bytes; `None` for an empty range (an empty part of a zero-length
/// object), which has no bytes to name.
pub fn content_range(range: &Range<u64>, size: u64) -> Option<String> {
    (range.end > range.start).then(|| format!("bytes {}-{}/{size}", range.start, range.end - 1))
}

/// The part number a request asks for, checked (`InvalidArgument` outside
/// 1 to 10,000); `Range` and `partNumber` together are `InvalidRequest`.
pub fn requested(part_number: Option<i32>, has_range: bool) -> S3Result<Option<u32>> {
    let Some(n) = part_number else {
        return Ok(None);
    };
    if has_range {
        return Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        ));
    }
    if !(1..=MAX_PART).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    Ok(Some(n as u32))
}

/// Resolves part `n` against what the master said (`stat` from
/// [`trove_client::Client::stat_part`] with `n`).
pub fn resolve(stat: &Stat, n: u32) -> S3Result<Part> {
    match (stat.parts, &stat.part) {
        (Some(count), Some(range)) => Ok(Part {
            range: range.clone(),
            count: Some(i32::try_from(count).unwrap_or(i32::MAX)),
        }),
        (Some(count), None) => Err(invalid_part_number(n, count)),
        (None, _) if n == 1 => Ok(Part {
            range: 0..stat.size,
            count: None,
        }),
        (None, _) => Err(invalid_part_number(n, 1)),
    }
}

/// `416 InvalidPartNumber`, which s3s has no code for.
fn invalid_part_number(n: u32, count: u32) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        format!("The requested partnumber is not satisfiable: part {n} of an object of {count} parts"),
    );
    e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(size: u64, parts: Option<u32>, part: Option<Range<u64>>) -> Stat {
        Stat {
            key: "/b/k".into(),
            size,
            md5: String::new(),
            sha256: String::new(),
            volumes: vec![],
            balanced: true,
            created: None,
            expires: None,
            location: String::new(),
            meta: vec![],
            etag: String::new(),
            write: None,
            parts,
            part,
            last_modified: None,
            headers: Default::default(),
        }
    }

    #[test]
    fn parts_of_a_multipart_object_and_of_a_single_one() {
        let mp = stat(12, Some(3), Some(5..10));
        let part = resolve(&mp, 2).unwrap();
        assert_eq!(
            part,
            Part {
                range: 5..10,
                count: Some(3)
            }
        );
        assert_eq!(content_range(&part.range, 12).as_deref(), Some("bytes 5-9/12"));
        let past = resolve(&stat(12, Some(3), None), 4).unwrap_err();
        assert_eq!(*past.code(), S3ErrorCode::Custom("InvalidPartNumber".into()));
        assert_eq!(past.status_code(), Some(http::StatusCode::RANGE_NOT_SATISFIABLE));

        let single = stat(7, None, None);
        assert_eq!(
            resolve(&single, 1).unwrap(),
            Part {
                range: 0..7,
                count: None
            }
        );
        assert!(resolve(&single, 2).is_err());
        let empty = resolve(&stat(0, None, None), 1).unwrap();
        assert_eq!(content_range(&empty.range, 0), None, "no range in nothing");
    }

    #[test]
    fn part_numbers_are_checked() {
        assert_eq!(requested(None, true).unwrap(), None);
        assert_eq!(requested(Some(1), false).unwrap(), Some(1));
        assert_eq!(requested(Some(10_000), false).unwrap(), Some(10_000));
        for bad in [0, -1, 10_001] {
            assert_eq!(
                *requested(Some(bad), false).unwrap_err().code(),
                S3ErrorCode::InvalidArgument
            );
        }
        assert_eq!(
            *requested(Some(1), true).unwrap_err().code(),
            S3ErrorCode::InvalidRequest
        );
    }
}
