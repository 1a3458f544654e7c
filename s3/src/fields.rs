//! Groups of fields that several s3s types carry alike (the generated
//! types share no trait for them): one macro per group, so that each
//! mapping is written once.

/// The metadata a write sets ([`crate::gateway::MetaIn`]), from any input
/// with S3's metadata fields: PutObject, CopyObject (with `REPLACE`),
/// CreateMultipartUpload.
macro_rules! meta_in {
    ($input:expr) => {
        $crate::gateway::MetaIn {
            content_type: $input.content_type.as_deref(),
            content_disposition: $input.content_disposition.as_deref(),
            cache_control: $input.cache_control.as_deref(),
            content_encoding: $input.content_encoding.as_deref(),
            content_language: $input.content_language.as_deref(),
            expires: $input.expires.as_ref(),
            metadata: $input.metadata.as_ref(),
        }
    };
}

/// The conditions on a copy's source ([`crate::gateway::Conditions`]):
/// CopyObject, UploadPartCopy.
macro_rules! copy_source_conditions {
    ($input:expr) => {
        $crate::gateway::Conditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
    };
}

/// The checksums a body was sent with, as an `s3s::dto::Checksum`:
/// PutObject, UploadPart.
macro_rules! checksums_of {
    ($input:expr) => {
        s3s::dto::Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            ..Default::default()
        }
    };
}

/// An output (`Type { field: value, … }`) that also answers the checksums
/// in `sums` (an `s3s::dto::Checksum`), every other field default.
macro_rules! with_checksums {
    ($output:ident { $($field:ident: $value:expr),* $(,)? }, $sums:expr) => {{
        let sums: s3s::dto::Checksum = $sums;
        $output {
            $($field: $value,)*
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            ..Default::default()
        }
    }};
}
