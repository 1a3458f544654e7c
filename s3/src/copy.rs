//! CopyObject, server-side: the master composes the new value from the
//! source on the volumes (the bytes never pass through the gateway), the
//! source pinned by its md5 so that a source replaced meanwhile fails the
//! copy instead of copying something else.
//!
//! The copy is a new single-part object, as S3 makes it: its ETag is the
//! md5 of its bytes (which the master computes while composing), also when
//! the source was completed by a multipart upload (`<hex>-N`). S3 says
//! source and copy have the same ETag only for a non-multipart source; a
//! client that compares a single-part ETag with the md5 of the bytes
//! (rclone does) finds them equal, and `partNumber` reads of the copy
//! answer it as one part.

use crate::error::s3;
use crate::gateway::{s3_time, Conditions, Gateway};
use crate::{etag, names};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use std::time::SystemTime;
use trove_client::{ComposeSource, PutOptions, Stat};
use trove_common::conditions::ReadVerdict;

/// The bucket and key of an `x-amz-copy-source`.
pub(crate) fn source(src: &CopySource) -> S3Result<(&str, &str)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
            ..
        } => {
            names::check_version(version_id.as_deref())?;
            Ok((bucket, key))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "copy sources other than bucket/key are not supported"
        )),
    }
}

/// Looks up a copy source and applies the `x-amz-copy-source-if-*`
/// conditions (any failure is `412`).
pub(crate) async fn source_stat(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    conds: &Conditions<'_>,
) -> S3Result<Stat> {
    let src = names::object_key(bucket, key)?;
    let stat = match gw.client.stat(&src).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            gw.need_bucket(bucket).await?;
            return Err(s3_error!(
                NoSuchKey,
                "the copy source {bucket}/{key} does not exist"
            ));
        }
        Err(e) => return Err(s3(e)),
    };
    match conds.check(&stat.etag, stat.last_modified) {
        ReadVerdict::Serve => Ok(stat),
        ReadVerdict::Failed(why) => Err(s3_error!(
            PreconditionFailed,
            "a copy-source condition does not hold: {why}"
        )),
        ReadVerdict::NotModified => Err(s3_error!(
            PreconditionFailed,
            "a copy-source condition does not hold: the source has not changed since the x-amz-copy-source-if-none-match / -if-modified-since given"
        )),
    }
}

pub async fn copy_object(
    gw: &Gateway,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let input = &req.input;
    let (if_match, if_none_match) = etag::conditions_in(&req.headers)?;
    let (src_bucket, src_key) = source(&input.copy_source)?;
    let dst = names::object_key(&input.bucket, &input.key)?;
    gw.need_bucket(&input.bucket).await?;
    let conds = copy_source_conditions!(input);
    let stat = source_stat(gw, src_bucket, src_key, &conds).await?;
    let replace = match input.metadata_directive.as_ref().map(MetadataDirective::as_str) {
        None | Some(MetadataDirective::COPY) => false,
        Some(MetadataDirective::REPLACE) => true,
        Some(other) => return Err(s3_error!(InvalidArgument, "unknown metadata directive `{other}`")),
    };
    if stat.key == dst && !replace {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata (use the REPLACE metadata directive)"
        ));
    }
    let meta = if replace {
        meta_in!(input).pairs()?
    } else {
        stat.meta.clone()
    };
    // `If-Match` / `If-None-Match` on the destination: the master checks
    // them under the key's lock, as for PutObject.
    let opts = PutOptions {
        replace: true,
        allow_empty: true,
        meta,
        ..etag::destination_conditions(if_match.as_ref(), if_none_match.as_ref())
    };
    let sources = [ComposeSource {
        key: stat.key.clone(),
        md5: Some(stat.md5.clone()),
        ..Default::default()
    }];
    let written = gw.client.compose(&dst, &sources, &opts).await.map_err(s3)?;
    // The copy's bytes are the source's: its md5 is the source's md5.
    let e_tag = written.etag.or(written.md5).unwrap_or(stat.md5);
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(etag::dto(&e_tag)),
            last_modified: Some(s3_time(SystemTime::now())),
            ..Default::default()
        }),
        ..Default::default()
    }))
}
