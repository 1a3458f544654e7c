//! Buckets: a bucket `b` is the marker key `/b/` (its `created` is the
//! bucket's creation date), or any key under `/b/` (written with curl).

use crate::error::{no_bucket, s3};
use crate::gateway::{s3_time, Gateway};
use crate::names;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use std::time::SystemTime;
use trove_client::{ListOptions, PutOptions};

/// The one region the gateway serves, as S3 names it.
const REGION: &str = "us-east-1";

/// ListBuckets: the first path segments that are valid bucket names, in
/// the byte order of their keys (`/name/`: `abc-d` before `abc`, since
/// `-` sorts before `/`); with `prefix`, those that start with it; `max-buckets` a page
/// (then a `ContinuationToken`: the page's last name); `bucket-region`
/// other than the gateway's one region, none.
pub async fn list(gw: &Gateway, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
    let input = req.input;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = match input.max_buckets {
        None => usize::MAX,
        Some(n @ 1..=10_000) => n as usize,
        Some(n) => {
            return Err(s3_error!(
                InvalidArgument,
                "max-buckets must be from 1 to 10000, not {n}"
            ))
        }
    };
    let mut buckets = vec![];
    let mut more = false;
    let mut opts = ListOptions {
        delimiter: Some("/".into()),
        page_size: Some(1000),
        ..Default::default()
    };
    match &input.continuation_token {
        // Past every key of the last bucket given.
        Some(last) => opts.after = Some(names::bucket_marker(last)),
        None if !prefix.is_empty() => opts.start = Some(format!("/{prefix}")),
        None => {}
    }
    if input.bucket_region.as_deref().is_some_and(|r| r != REGION) {
        return Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(vec![]),
            owner: Some(owner()),
            prefix: input.prefix,
            continuation_token: None,
        }));
    }
    'pages: loop {
        let page = gw.client.list_page("/", &opts).await.map_err(s3)?;
        // Keys the master did not roll up (one without delimiter support)
        // still name their bucket; the next page then starts past it.
        let mut found: Vec<String> = page.prefixes.clone();
        let mut skip_to = None;
        for k in &page.keys {
            if let Some(end) = k[1..].find('/') {
                let prefix = k[..end + 2].to_string();
                skip_to = names::successor(&prefix);
                found.push(prefix);
                break;
            }
        }
        for found in found {
            let name = found.trim_start_matches('/').trim_end_matches('/');
            if !name.starts_with(&prefix) {
                if name > prefix.as_str() {
                    break 'pages; // past every name with the prefix
                }
                continue;
            }
            if !names::valid_bucket(name) || buckets.iter().any(|b: &Bucket| b.name.as_deref() == Some(name))
            {
                continue;
            }
            if buckets.len() == max {
                more = true;
                break 'pages;
            }
            buckets.push(Bucket {
                name: Some(name.to_string()),
                creation_date: Some(s3_time(created(gw, name).await?)),
                bucket_region: None,
            });
        }
        opts.start = match (skip_to, page.next) {
            (Some(skip), _) => Some(skip),
            (None, Some(next)) => Some(next),
            (None, None) => break,
        };
        opts.after = None;
    }
    let continuation_token = more
        .then(|| buckets.last().and_then(|b| b.name.clone()))
        .flatten();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner()),
        prefix: input.prefix,
        continuation_token,
    }))
}

/// When bucket `name` was created: its marker's date, or for a bucket of
/// keys written with curl (no marker), the date of its first key in order
/// (a listing knows no older one without reading them all).
async fn created(gw: &Gateway, name: &str) -> S3Result<SystemTime> {
    let marker = names::bucket_marker(name);
    match gw.client.stat(&marker).await {
        Ok(stat) => return Ok(stat.last_modified.unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(s3(e)),
    }
    let opts = ListOptions {
        page_size: Some(1),
        detail: true,
        ..Default::default()
    };
    let page = gw.client.list_page(&marker, &opts).await.map_err(s3)?;
    let first = page.objects.first().map_or(0, |o| o.created);
    Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(first))
}

/// The one owner every bucket and object reports.
pub fn owner() -> Owner {
    Owner {
        display_name: Some("trove".into()),
        id: Some("trove".into()),
    }
}

/// CreateBucket: writes the marker; `BucketAlreadyOwnedByYou` when it exists.
pub async fn create(
    gw: &Gateway,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let bucket = names::new_bucket(&req.input.bucket)?;
    let marker = names::bucket_marker(bucket);
    match gw.client.stat(&marker).await {
        Ok(_) => {
            return Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "the bucket {bucket} already exists and is yours"
            ))
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(s3(e)),
    }
    let opts = PutOptions {
        allow_empty: true,
        ..Default::default()
    };
    match gw.client.put_bytes(&marker, bytes::Bytes::new(), &opts).await {
        Ok(_) => {}
        Err(trove_client::Error::Exists { .. }) => {
            return Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "the bucket {bucket} already exists"
            ))
        }
        Err(e) => return Err(s3(e)),
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{bucket}")),
    }))
}

/// HeadBucket.
pub async fn head(gw: &Gateway, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
    gw.need_bucket(&req.input.bucket).await?;
    Ok(S3Response::new(HeadBucketOutput::default()))
}

/// GetBucketLocation: one region, answered as S3's default (empty).
pub async fn location(
    gw: &Gateway,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    gw.need_bucket(&req.input.bucket).await?;
    Ok(S3Response::new(GetBucketLocationOutput::default()))
}

/// DeleteBucket: only an empty bucket (`BucketNotEmpty` otherwise); its
/// multipart uploads in progress are aborted with it.
pub async fn delete(
    gw: &Gateway,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    let bucket = names::bucket(&req.input.bucket)?;
    let marker = names::bucket_marker(bucket);
    let page = gw
        .client
        .list_page(
            &marker,
            &ListOptions {
                page_size: Some(2),
                ..Default::default()
            },
        )
        .await
        .map_err(s3)?;
    if page.keys.iter().any(|k| k != &marker) {
        return Err(s3_error!(
            BucketNotEmpty,
            "the bucket {bucket} is not empty: delete its objects first"
        ));
    }
    match gw.client.delete(&marker).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => return Err(no_bucket(bucket)),
        Err(e) => return Err(s3(e)),
    }
    crate::multipart::abort_all(gw, bucket).await;
    Ok(S3Response::new(DeleteBucketOutput::default()))
}
