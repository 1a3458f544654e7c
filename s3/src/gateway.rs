//! [`Gateway`]: the S3 operations, each answered by a call into the module
//! that implements it; the state they share (the client, the upload TTL);
//! and the helpers several of them need (does a bucket exist, metadata in
//! and out, conditional requests).

use crate::error::{no_bucket, s3};
use crate::names::{self, check_version};
use crate::unsupported::{refuse_bucket_settings, refuse_encryption, refuse_object_settings};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use trove_client::Client;
use trove_common::conditions::{Current, Preconditions, ReadVerdict, Tags};

/// The S3 service: stateless, every answer comes from the master.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) client: Client,
    /// How long the parts of an upload live before the expirer reclaims them.
    pub(crate) upload_ttl: Duration,
}

impl Gateway {
    pub fn new(client: Client, upload_ttl: Duration) -> Gateway {
        Gateway { client, upload_ttl }
    }

    /// Whether bucket `b` exists: its marker `/b/` does, or any key under
    /// `/b/` (written with curl).
    pub(crate) async fn bucket_exists(&self, bucket: &str) -> S3Result<bool> {
        names::bucket(bucket)?;
        let marker = names::bucket_marker(bucket);
        match self.client.stat(&marker).await {
            Ok(_) => return Ok(true),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(s3(e)),
        }
        let page = self
            .client
            .list_page(
                &marker,
                &trove_client::ListOptions {
                    page_size: Some(1),
                    ..Default::default()
                },
            )
            .await
            .map_err(s3)?;
        Ok(!page.keys.is_empty())
    }

    /// `NoSuchBucket` unless the bucket exists.
    pub(crate) async fn need_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.bucket_exists(bucket).await? {
            Ok(())
        } else {
            Err(no_bucket(bucket))
        }
    }
}

/// Metadata of a write, as `(header name, value)` pairs for the master.
#[derive(Default)]
pub(crate) struct MetaIn<'a> {
    pub content_type: Option<&'a str>,
    pub content_disposition: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub content_language: Option<&'a str>,
    pub expires: Option<&'a Timestamp>,
    pub metadata: Option<&'a Metadata>,
}

impl MetaIn<'_> {
    pub fn pairs(&self) -> S3Result<Vec<(String, String)>> {
        let mut out = vec![];
        // `aws-chunked` is how the body was sent, not how it is stored.
        let encoding = self.content_encoding.map(|e| {
            e.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        for (name, v) in [
            ("content-type", self.content_type),
            ("content-disposition", self.content_disposition),
            ("cache-control", self.cache_control),
            ("content-encoding", encoding.as_deref().filter(|e| !e.is_empty())),
            ("content-language", self.content_language),
        ] {
            if let Some(v) = v {
                out.push((name.to_string(), v.to_string()));
            }
        }
        if let Some(t) = self.expires {
            out.push(("expires".into(), http_date(t)?));
        }
        if let Some(m) = self.metadata {
            let mut m: Vec<_> = m.iter().collect();
            m.sort();
            for (k, v) in m {
                let name = format!("x-amz-meta-{}", k.to_ascii_lowercase());
                if k.is_empty() {
                    return Err(s3_error!(
                        InvalidArgument,
                        "user metadata needs a name after x-amz-meta-"
                    ));
                }
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || http::HeaderValue::from_str(v).is_err()
                {
                    return Err(s3_error!(
                        InvalidArgument,
                        "metadata `{k}` cannot be sent as an HTTP header"
                    ));
                }
                out.push((name, v.clone()));
            }
        }
        let total: usize = out.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > 8 * 1024 {
            return Err(s3_error!(
                MetadataTooLarge,
                "the metadata is {total} bytes; Trove keeps at most 8 KiB per object"
            ));
        }
        Ok(out)
    }
}

fn http_date(t: &Timestamp) -> S3Result<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf)
        .map_err(|e| s3_error!(InvalidArgument, "bad date: {e}"))?;
    String::from_utf8(buf).map_err(|e| s3_error!(InvalidArgument, "bad date: {e}"))
}

/// Stored metadata, split into S3's output fields.
#[derive(Default)]
pub(crate) struct MetaOut {
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
    pub cache_control: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<Timestamp>,
    pub metadata: Option<Metadata>,
}

impl MetaOut {
    pub fn from_pairs(pairs: &[(String, String)]) -> MetaOut {
        let mut out = MetaOut::default();
        let mut user: HashMap<String, String> = HashMap::new();
        for (name, v) in pairs {
            let v = v.clone();
            match name.as_str() {
                "content-type" => out.content_type = Some(v),
                "content-disposition" => out.content_disposition = Some(v),
                "cache-control" => out.cache_control = Some(v),
                "content-encoding" => out.content_encoding = Some(v),
                "content-language" => out.content_language = Some(v),
                "expires" => out.expires = Timestamp::parse(TimestampFormat::HttpDate, &v).ok(),
                n => {
                    if let Some(k) = n.strip_prefix("x-amz-meta-") {
                        user.insert(k.to_string(), v);
                    }
                }
            }
        }
        if !user.is_empty() {
            out.metadata = Some(user);
        }
        out
    }
}

/// A timestamp as a `SystemTime`.
pub(crate) fn system_time(t: &Timestamp) -> SystemTime {
    SystemTime::from(time::OffsetDateTime::from(t.clone()))
}

/// A stored time as S3 reports it, in whole seconds: HEAD and GET can
/// only carry `Last-Modified` as an HTTP date, so a listing or a copy's
/// result that gave the milliseconds would disagree with them by up to a
/// second (and `aws s3 sync --exact-timestamps` would download every
/// unchanged file again). AWS's listings always say `.000Z`.
pub(crate) fn s3_time(t: SystemTime) -> Timestamp {
    Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs(t)))
}

/// Whole seconds since the epoch (HTTP dates have no finer grain).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The conditional headers of a read (or of a copy's source).
#[derive(Default)]
pub(crate) struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

impl Conditions<'_> {
    /// Evaluates them against an object with ETag `etag`, written at
    /// `modified`, by the rules the master and the volumes apply
    /// (`trove_common::conditions`: RFC 9110's order, which S3 follows).
    /// An object without a time of its own skips the date conditions.
    pub fn check(&self, etag: &str, modified: Option<SystemTime>) -> ReadVerdict {
        let tags = |c: Option<&ETagCondition>| {
            c.map(|c| match c {
                ETagCondition::Any => Tags::Any,
                ETagCondition::ETag(e) => Tags::one(e.value(), matches!(e, ETag::Weak(_))),
            })
        };
        let date = |t: Option<&Timestamp>| modified.and(t.map(system_time));
        let current = Current {
            etag,
            modified: modified.unwrap_or(SystemTime::UNIX_EPOCH),
        };
        Preconditions::new(
            tags(self.if_match),
            tags(self.if_none_match),
            date(self.if_unmodified_since),
            date(self.if_modified_since),
        )
        .check_read(current)
    }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        crate::bucket::list(self, req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        refuse_bucket_settings(&req.headers)?;
        crate::bucket::create(self, req).await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        crate::bucket::head(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        crate::bucket::delete(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        crate::bucket::location(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        // Never enabled: the answer with no status.
        self.need_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        refuse_encryption(&req.headers)?;
        refuse_object_settings(&req.headers)?;
        crate::put::put_object(self, req).await
    }

    /// Browser form uploads are refused: s3s holds the whole file in memory
    /// before this is called, and does not pass on the file's name for a
    /// key's `${filename}`, so every form upload would land on one key.
    async fn post_object(&self, _req: S3Request<PostObjectInput>) -> S3Result<S3Response<PostObjectOutput>> {
        Err(s3_error!(
            NotImplemented,
            "browser form uploads (POST Object) are not supported: upload with a presigned PUT URL instead"
        ))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        refuse_encryption(&req.headers)?;
        check_version(req.input.version_id.as_deref())?;
        crate::get::get_object(self, req).await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        refuse_encryption(&req.headers)?;
        check_version(req.input.version_id.as_deref())?;
        crate::get::head_object(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        crate::delete::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        crate::delete::delete_objects(self, req).await
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        refuse_encryption(&req.headers)?;
        refuse_object_settings(&req.headers)?;
        crate::copy::copy_object(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        crate::list::list_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        crate::list::list_objects_v2(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        crate::list::list_object_versions(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        refuse_encryption(&req.headers)?;
        refuse_object_settings(&req.headers)?;
        crate::multipart::create(self, req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        refuse_encryption(&req.headers)?;
        crate::multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        refuse_encryption(&req.headers)?;
        crate::multipart::upload_part_copy(self, req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        crate::multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        crate::multipart::list_uploads(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        crate::multipart::abort(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        crate::multipart::complete(self, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_common::conditions::Failed;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from(time::OffsetDateTime::from_unix_timestamp(secs).unwrap())
    }

    #[test]
    fn conditions_follow_rfc_9110_order() {
        let m = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let tag = |s: &str| ETagCondition::ETag(ETag::Strong(s.into()));
        let (good, bad) = (tag("abc"), tag("xyz"));
        let eval = |c: Conditions| c.check("abc", m);
        assert_eq!(eval(Conditions::default()), ReadVerdict::Serve);
        assert_eq!(
            eval(Conditions {
                if_match: Some(&good),
                ..Default::default()
            }),
            ReadVerdict::Serve
        );
        assert_eq!(
            eval(Conditions {
                if_match: Some(&bad),
                ..Default::default()
            }),
            ReadVerdict::Failed(Failed::Changed)
        );
        let weak = ETagCondition::ETag(ETag::Weak("abc".into()));
        assert_eq!(
            eval(Conditions {
                if_match: Some(&weak),
                ..Default::default()
            }),
            ReadVerdict::Failed(Failed::Changed),
            "If-Match compares strongly"
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: Some(&good),
                ..Default::default()
            }),
            ReadVerdict::NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: Some(&ETagCondition::Any),
                ..Default::default()
            }),
            ReadVerdict::NotModified
        );
        let (before, after) = (ts(999), ts(1001));
        assert_eq!(
            eval(Conditions {
                if_unmodified_since: Some(&before),
                ..Default::default()
            }),
            ReadVerdict::Failed(Failed::ModifiedSince)
        );
        assert_eq!(
            eval(Conditions {
                if_unmodified_since: Some(&before),
                if_match: Some(&good),
                ..Default::default()
            }),
            ReadVerdict::Serve,
            "If-Match wins over If-Unmodified-Since"
        );
        assert_eq!(
            eval(Conditions {
                if_modified_since: Some(&after),
                ..Default::default()
            }),
            ReadVerdict::NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_modified_since: Some(&before),
                ..Default::default()
            }),
            ReadVerdict::Serve
        );
        let timeless = Conditions {
            if_modified_since: Some(&after),
            if_unmodified_since: Some(&before),
            ..Default::default()
        };
        assert_eq!(
            timeless.check("abc", None),
            ReadVerdict::Serve,
            "no time, no date conditions"
        );
    }

    #[test]
    fn reported_times_are_whole_seconds() {
        let stored = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_424_603_973);
        let mut text = Vec::new();
        s3_time(stored)
            .format(TimestampFormat::DateTime, &mut text)
            .unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), "2026-11-23T09:03:23.000Z");
    }

    #[test]
    fn metadata_round_trips() {
        let mut user = HashMap::new();
        user.insert("Color".to_string(), "blue".to_string());
        let pairs = MetaIn {
            content_type: Some("image/png"),
            content_encoding: Some("aws-chunked"),
            metadata: Some(&user),
            ..Default::default()
        }
        .pairs()
        .unwrap();
        assert_eq!(
            pairs,
            [
                ("content-type".to_string(), "image/png".to_string()),
                ("x-amz-meta-color".to_string(), "blue".to_string())
            ]
        );
        let gzip = MetaIn {
            content_encoding: Some("gzip, aws-chunked"),
            ..Default::default()
        };
        assert_eq!(
            gzip.pairs().unwrap(),
            [("content-encoding".to_string(), "gzip".to_string())]
        );
        let out = MetaOut::from_pairs(&pairs);
        assert_eq!(out.content_type.as_deref(), Some("image/png"));
        assert_eq!(out.metadata.unwrap()["color"], "blue");
        let big: HashMap<_, _> = [("k".to_string(), "v".repeat(9000))].into();
        let e = MetaIn {
            metadata: Some(&big),
            ..Default::default()
        }
        .pairs()
        .unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::MetadataTooLarge);
        // `x-amz-meta-` alone names nothing: the client's error, said so.
        let nameless: HashMap<_, _> = [(String::new(), "v".to_string())].into();
        let e = MetaIn {
            metadata: Some(&nameless),
            ..Default::default()
        }
        .pairs()
        .unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidArgument);
    }
}
