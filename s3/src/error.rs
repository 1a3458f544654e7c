//! The one place where Trove's errors become S3's.

use s3s::{s3_error, S3Error, S3ErrorCode};
use trove_client::Error;

/// The S3 error for a failed call about `key` (an S3 object or bucket
/// name, for messages). Server faults are logged; client mistakes are not.
pub fn s3(e: Error) -> S3Error {
    match e {
        Error::NotFound { .. } => s3_error!(NoSuchKey),
        Error::Conflict { key, .. } => {
            s3_error!(SlowDown, "another write of {key} is in flight; retry shortly")
        }
        Error::Unavailable { message } => s3_error!(ServiceUnavailable, "{message}"),
        Error::RangeNotSatisfiable { len, .. } => invalid_range(len),
        Error::InvalidKey { source, .. } => {
            s3_error!(InvalidArgument, "Trove cannot store this key: {source}")
        }
        e @ Error::InvalidHeader { .. } => s3_error!(InvalidArgument, "{e}"),
        Error::Rejected { status, message, .. } => rejected(status, &message),
        Error::Server {
            status: 507,
            message,
            url,
        } => {
            // A master with no volume that has room for the write. Not
            // retried by SDKs (a retry cannot help until space is freed).
            tracing::error!(%url, %message, "the cluster is out of space");
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("InsufficientStorage".into()),
                "the storage cluster has no room for this object; nothing was stored (free space or add volumes)",
            );
            e.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
            e
        }
        e @ (Error::Transport { .. } | Error::Stalled { .. }) => {
            // The master (or a volume) did not answer: a `503` S3 clients
            // retry, without the cluster's internal addresses.
            tracing::error!(error = %e, "the storage cluster cannot be reached");
            s3_error!(
                ServiceUnavailable,
                "the storage cluster cannot be reached; retry later (the gateway's log has the detail)"
            )
        }
        Error::Exists { key } => {
            tracing::error!(%key, "the master refused a replace as an existing key");
            s3_error!(InternalError, "the master refused to replace {key}")
        }
        Error::Server { url, status, message } => {
            // The URL, an internal address, goes to the log only.
            tracing::error!(%url, status, %message, "master call failed");
            s3_error!(InternalError, "the storage cluster failed ({status}): {message}")
        }
        e => {
            tracing::error!(error = %e, "master call failed");
            s3_error!(InternalError, "{e}")
        }
    }
}

/// A `4xx` from the master other than 404/409.
fn rejected(status: u16, message: &str) -> S3Error {
    let lower = message.to_ascii_lowercase();
    match status {
        // S3 answers a conditional write of an absent key `NoSuchKey`.
        412 if message.starts_with("no value at this key") => s3_error!(NoSuchKey, "{message}"),
        412 => s3_error!(PreconditionFailed, "{message}"),
        414 => s3_error!(KeyTooLongError, "{message}"),
        400 if lower.contains("md5") => s3_error!(BadDigest, "{message}"),
        400 if lower.contains("sha256") || lower.contains("crc32c") => s3_error!(BadDigest, "{message}"),
        400 if lower.contains("metadata") => s3_error!(MetadataTooLarge, "{message}"),
        411 => s3_error!(MissingContentLength, "{message}"),
        413 => s3_error!(EntityTooLarge, "{message}"),
        _ => s3_error!(InvalidRequest, "{message}"),
    }
}

/// `416 InvalidRange` for a read of an object of `len` bytes, with the
/// `Content-Range: bytes */len` RFC 9110 (§15.5.17) asks for, which tells
/// the client how long the object is.
pub fn invalid_range(len: u64) -> S3Error {
    let mut e = s3_error!(
        InvalidRange,
        "the range is not satisfiable: the object has {len} bytes"
    );
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_RANGE,
        http::HeaderValue::from_str(&format!("bytes */{len}")).expect("digits are a valid header value"),
    );
    e.set_headers(headers);
    e
}

/// The error for a missing bucket.
pub fn no_bucket(bucket: &str) -> S3Error {
    s3_error!(NoSuchBucket, "the bucket {bucket} does not exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_answers_map_to_s3_codes() {
        let code = |e: Error| s3(e).code().clone();
        assert_eq!(
            code(Error::NotFound { key: "/b/k".into() }),
            S3ErrorCode::NoSuchKey
        );
        assert_eq!(
            code(Error::Conflict {
                key: "/b/k".into(),
                message: "busy".into()
            }),
            S3ErrorCode::SlowDown
        );
        let rejected = |status, message: &str| Error::Rejected {
            key: "/b/k".into(),
            status,
            message: message.into(),
        };
        assert_eq!(
            code(rejected(400, "Content-MD5 does not match")),
            S3ErrorCode::BadDigest
        );
        assert_eq!(
            code(rejected(
                400,
                "Key-Crc32c mismatch: the client sent 00000000 but the body's CRC32C is 0000000f"
            )),
            S3ErrorCode::BadDigest
        );
        assert_eq!(
            code(rejected(400, "metadata over 8 KiB")),
            S3ErrorCode::MetadataTooLarge
        );
        assert_eq!(
            code(rejected(412, "source changed")),
            S3ErrorCode::PreconditionFailed
        );
        let full = s3(Error::Server {
            url: "http://10.0.0.1:5200/b/k".into(),
            status: 507,
            message: "no volume has room for 5497558138881 bytes".into(),
        });
        assert_eq!(full.status_code(), Some(http::StatusCode::INSUFFICIENT_STORAGE));
        assert_eq!(full.code().as_str(), "InsufficientStorage");
        let down = s3(Error::Transport {
            url: "http://10.0.0.1:5200/b/k".into(),
            message: "Connection refused".into(),
            sent: false,
        });
        assert_eq!(*down.code(), S3ErrorCode::ServiceUnavailable);
        assert!(!down.message().unwrap().contains("10.0.0.1"), "{down:?}");
        let failed = s3(Error::Server {
            url: "http://10.0.0.1:5200/b/k".into(),
            status: 502,
            message: "pull failed".into(),
        });
        assert_eq!(*failed.code(), S3ErrorCode::InternalError);
        assert!(!failed.message().unwrap().contains("10.0.0.1"), "{failed:?}");
    }
}
