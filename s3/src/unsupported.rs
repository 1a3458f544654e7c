//! Requests that ask for what Trove cannot honour — server-side
//! encryption, object lock, ACLs that grant anything, tagging, website
//! redirects, a storage class other than `STANDARD` — are refused before
//! anything is stored. Answering them with a success would be a lie a
//! client acts on: an object "locked" in `COMPLIANCE` mode that anyone
//! can delete, a "public" URL that answers `403`, tags a lifecycle rule
//! will never see.
//!
//! The checks read the request's headers, where every S3 client sends
//! these settings, so one function covers each group of operations.

use http::HeaderMap;
use s3s::{s3_error, S3Result};

/// Canned ACLs that grant nothing beyond what every key pair of the
/// gateway has anyway (full control of every bucket and object): they are
/// accepted as no-ops. rclone sends `x-amz-acl: private` on every upload
/// by default, and `bucket-owner-full-control` is what cross-account
/// uploaders send to hand the bucket's owner the object — here the owner
/// already has it.
const HARMLESS_CANNED_ACLS: [&str; 2] = ["private", "bucket-owner-full-control"];

/// Server-side encryption is not supported: a request that asks for it
/// (SSE-S3, SSE-KMS or SSE-C, for the object or a copy's source) is
/// `NotImplemented`, never stored or served as if it had been honoured.
pub(crate) fn refuse_encryption(headers: &HeaderMap) -> S3Result<()> {
    let asked = headers.keys().find(|n| {
        n.as_str().starts_with("x-amz-server-side-encryption")
            || n.as_str().starts_with("x-amz-copy-source-server-side-encryption")
    });
    match asked {
        Some(name) => Err(s3_error!(
            NotImplemented,
            "server-side encryption ({name}) is not supported: objects are stored unencrypted; nothing was done"
        )),
        None => Ok(()),
    }
}

/// The settings a write (PutObject, CopyObject, CreateMultipartUpload)
/// may carry that Trove cannot honour: object lock (AWS's answer for a
/// bucket without an Object Lock configuration, which no Trove bucket
/// has), an ACL that grants anything, tags, a website redirect.
pub(crate) fn refuse_object_settings(headers: &HeaderMap) -> S3Result<()> {
    if let Some(name) = headers
        .keys()
        .find(|n| n.as_str().starts_with("x-amz-object-lock-"))
    {
        return Err(s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration: Trove has no object lock, so {name} cannot be honoured; nothing was stored"
        ));
    }
    refuse_acl(headers)?;
    if headers.get("x-amz-tagging").is_some_and(|v| !v.is_empty()) {
        return Err(s3_error!(
            NotImplemented,
            "object tagging (x-amz-tagging) is not supported; send the object without tags. Nothing was stored"
        ));
    }
    if headers.contains_key("x-amz-website-redirect-location") {
        return Err(s3_error!(
            NotImplemented,
            "website redirects (x-amz-website-redirect-location) are not supported; nothing was stored"
        ));
    }
    refuse_storage_class(headers)
}

/// A storage class other than `STANDARD`, the only one Trove has: every
/// object is kept the same way, on `--replicas` volumes, and listed as
/// `STANDARD`, so an object sent as `GLACIER` or `REDUCED_REDUNDANCY`
/// would come back as something it was not asked to be. AWS's answer to
/// a class it does not offer: `InvalidStorageClass`.
fn refuse_storage_class(headers: &HeaderMap) -> S3Result<()> {
    let Some(class) = headers.get("x-amz-storage-class") else {
        return Ok(());
    };
    let class = class.to_str().unwrap_or_default().trim();
    if class == "STANDARD" {
        return Ok(());
    }
    Err(s3_error!(
        InvalidStorageClass,
        "the storage class `{class}` is not offered: Trove keeps every object as STANDARD (on --replicas volumes); send the object without a storage class. Nothing was stored"
    ))
}

/// The settings a CreateBucket may carry that Trove cannot honour: object
/// lock, and an ACL that grants anything.
pub(crate) fn refuse_bucket_settings(headers: &HeaderMap) -> S3Result<()> {
    let lock = headers
        .get("x-amz-bucket-object-lock-enabled")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if lock {
        return Err(s3_error!(
            NotImplemented,
            "object lock (x-amz-bucket-object-lock-enabled) is not supported: Trove cannot keep objects from being deleted; the bucket was not created"
        ));
    }
    refuse_acl(headers)
}

/// `x-amz-acl` other than a harmless one ([`HARMLESS_CANNED_ACLS`]), or
/// any `x-amz-grant-*`: `NotImplemented`.
fn refuse_acl(headers: &HeaderMap) -> S3Result<()> {
    if let Some(acl) = headers.get("x-amz-acl") {
        let acl = acl.to_str().unwrap_or_default().trim();
        if !HARMLESS_CANNED_ACLS.contains(&acl) {
            return Err(s3_error!(
                NotImplemented,
                "ACLs are not supported: `x-amz-acl: {acl}` cannot be honoured (only `private` and `bucket-owner-full-control`, which grant nothing more than every key pair already has); nothing was done"
            ));
        }
    }
    if let Some(name) = headers.keys().find(|n| n.as_str().starts_with("x-amz-grant-")) {
        return Err(s3_error!(
            NotImplemented,
            "ACLs are not supported: {name} cannot be honoured; nothing was done"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_static(n),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    fn code(r: S3Result<()>) -> Option<S3ErrorCode> {
        r.err().map(|e| e.code().clone())
    }

    #[test]
    fn writes_that_ask_for_what_trove_cannot_honour_are_refused() {
        for harmless in [
            &[][..],
            &[("x-amz-acl", "private")],
            &[("x-amz-acl", "bucket-owner-full-control")],
            &[("x-amz-tagging", "")],
            &[("x-amz-meta-color", "blue"), ("content-type", "text/plain")],
            &[("x-amz-storage-class", "STANDARD")],
        ] {
            assert_eq!(
                code(refuse_object_settings(&headers(harmless))),
                None,
                "{harmless:?}"
            );
        }
        for lock in [
            ("x-amz-object-lock-mode", "COMPLIANCE"),
            ("x-amz-object-lock-retain-until-date", "2030-01-01T00:00:00Z"),
            ("x-amz-object-lock-legal-hold", "ON"),
        ] {
            assert_eq!(
                code(refuse_object_settings(&headers(&[lock]))),
                Some(S3ErrorCode::InvalidRequest),
                "{lock:?}"
            );
        }
        for unsupported in [
            ("x-amz-acl", "public-read"),
            ("x-amz-acl", "authenticated-read"),
            (
                "x-amz-grant-read",
                "uri=http://acs.amazonaws.com/groups/global/AllUsers",
            ),
            ("x-amz-tagging", "a=b"),
            ("x-amz-website-redirect-location", "/elsewhere"),
        ] {
            assert_eq!(
                code(refuse_object_settings(&headers(&[unsupported]))),
                Some(S3ErrorCode::NotImplemented),
                "{unsupported:?}"
            );
        }
    }

    #[test]
    fn storage_classes_other_than_standard_are_refused() {
        for class in ["GLACIER", "REDUCED_REDUNDANCY", "DEEP_ARCHIVE", "standard", ""] {
            let h = [("x-amz-storage-class", class)];
            assert_eq!(
                code(refuse_object_settings(&headers(&h))),
                Some(S3ErrorCode::InvalidStorageClass),
                "{class}"
            );
        }
    }

    #[test]
    fn buckets_with_object_lock_or_a_granting_acl_are_refused() {
        assert_eq!(code(refuse_bucket_settings(&headers(&[]))), None);
        assert_eq!(
            code(refuse_bucket_settings(&headers(&[
                ("x-amz-bucket-object-lock-enabled", "false"),
                ("x-amz-acl", "private")
            ]))),
            None
        );
        assert_eq!(
            code(refuse_bucket_settings(&headers(&[(
                "x-amz-bucket-object-lock-enabled",
                "True"
            )]))),
            Some(S3ErrorCode::NotImplemented)
        );
        assert_eq!(
            code(refuse_bucket_settings(&headers(&[(
                "x-amz-acl",
                "public-read-write"
            )]))),
            Some(S3ErrorCode::NotImplemented)
        );
        assert_eq!(
            code(refuse_bucket_settings(&headers(&[(
                "x-amz-grant-full-control",
                "id=x"
            )]))),
            Some(S3ErrorCode::NotImplemented)
        );
    }
}
