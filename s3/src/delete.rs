//! DeleteObject and DeleteObjects. Deleting a key that is not there
//! succeeds, as in S3; `VersionId=null` names the only version there is.

use crate::error::s3;
use crate::gateway::Gateway;
use crate::names::{self, check_version};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// Requests in flight at once for DeleteObjects.
const CONCURRENCY: usize = 16;

/// Deletes one object; absent is success.
async fn delete_one(gw: &Gateway, key: &str) -> S3Result<()> {
    match gw.client.delete(key).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(s3(e)),
    }
}

pub async fn delete_object(
    gw: &Gateway,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = &req.input;
    let key = names::object_key(&input.bucket, &input.key)?;
    check_version(input.version_id.as_deref())?;
    if input.if_match.is_some()
        || input.if_match_size.is_some()
        || input.if_match_last_modified_time.is_some()
    {
        return Err(s3_error!(
            NotImplemented,
            "conditional deletes (If-Match, x-amz-if-match-size, x-amz-if-match-last-modified-time) are not supported; nothing was deleted"
        ));
    }
    gw.need_bucket(&input.bucket).await?;
    delete_one(gw, &key).await?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

pub async fn delete_objects(
    gw: &Gateway,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    use futures::StreamExt;
    let input = req.input;
    gw.need_bucket(&input.bucket).await?;
    if input.delete.objects.len() > 1000 {
        return Err(s3_error!(MalformedXML, "at most 1000 keys per DeleteObjects"));
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    let bucket = input.bucket.clone();
    let results: Vec<(ObjectIdentifier, S3Result<()>)> = futures::stream::iter(input.delete.objects)
        .map(|o| {
            let bucket = &bucket;
            async move {
                let r = async {
                    check_version(o.version_id.as_deref())?;
                    if o.e_tag.is_some() || o.size.is_some() || o.last_modified_time.is_some() {
                        return Err(s3_error!(
                            NotImplemented,
                            "conditional deletes (ETag, Size, LastModifiedTime) are not supported; not deleted"
                        ));
                    }
                    let key = names::object_key(bucket, &o.key)?;
                    delete_one(gw, &key).await
                }
                .await;
                (o, r)
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let (mut deleted, mut errors) = (vec![], vec![]);
    for (o, r) in results {
        match r {
            Ok(()) if !quiet => deleted.push(DeletedObject {
                key: Some(o.key),
                version_id: o.version_id,
                ..Default::default()
            }),
            Ok(()) => {}
            Err(e) => errors.push(Error {
                code: Some(e.code().as_str().to_string()),
                message: e.message().map(str::to_string),
                key: Some(o.key),
                version_id: o.version_id,
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}
