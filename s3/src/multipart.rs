//! Multipart uploads. An upload is a folder `/.s3/uploads/<bucket>/<id>/`
//! holding `info` (the target key, its metadata, when it began) and one
//! key per part (`00001` … `10000`, so they list in order), all written
//! with a TTL (`--upload-ttl`) so that the master's expirer reclaims an
//! abandoned upload. Re-uploading a part replaces it. Complete checks the
//! list against the stored parts, has the master compose the object from
//! them on the volumes (nothing passes through the gateway), keeping the
//! parts' sizes in the object's record (for `partNumber` reads, see
//! [`crate::part`]), then deletes the parts. Its `info` stays for
//! [`COMPLETED_KEPT`], marked with what it completed into, so that a
//! Complete sent again — its answer lost on the way, and the SDK retrying
//! — gets the same answer, as on AWS; to every other call the upload is
//! gone.

use crate::checksum::Expected;
use crate::copy::{source, source_stat};
use crate::error::{no_bucket, s3};
use crate::gateway::{s3_time, Gateway};
use crate::part_sums::{self, PartSums};
use crate::put::{content_md5, stream_to};
use crate::{bucket, encoding::maybe, etag, names};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trove_client::{ByteRange, ComposeSource, Expiry, GetOptions, ListOptions, ObjectInfo, PutOptions};

/// Every part but the last must be at least this large.
pub const MIN_PART: u64 = 5 * 1024 * 1024;

/// How long a completed upload's `info` answers a repeated Complete.
const COMPLETED_KEPT: Duration = Duration::from_secs(3600);

/// What an upload's `info` key holds.
#[derive(Debug, Serialize, Deserialize)]
struct Info {
    /// The S3 key the upload will complete into.
    key: String,
    /// When it began, Unix ms.
    initiated: u64,
    /// The object's metadata, given at creation.
    meta: Vec<(String, String)>,
    /// Set once the upload has completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed: Option<Completed>,
}

/// What an upload completed into.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Completed {
    /// The object's ETag, unquoted.
    e_tag: String,
    /// The part list of the Complete: numbers and ETags, unquoted.
    parts: Vec<(i32, String)>,
}

/// A Complete's part list as numbers and unquoted ETags (`None` for a part
/// without either: such a list is refused anyway).
fn part_list(asked: &[CompletedPart]) -> Option<Vec<(i32, String)>> {
    asked
        .iter()
        .map(|p| {
            Some((
                p.part_number?,
                p.e_tag.as_ref()?.value().trim_matches('"').to_string(),
            ))
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A stored time (Unix ms) as S3 reports it ([`s3_time`]).
fn ms(t: u64) -> Timestamp {
    s3_time(UNIX_EPOCH + Duration::from_millis(t))
}

impl Gateway {
    fn upload_opts(&self) -> PutOptions {
        PutOptions {
            expires: Some(Expiry::After(self.upload_ttl)),
            ..Default::default()
        }
    }

    /// The upload's folder and description; `NoSuchUpload` when it does
    /// not exist (never began, completed, aborted, or expired) or belongs
    /// to another key.
    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> S3Result<(String, Info)> {
        let (dir, info) = self.upload_info(bucket, key, upload_id).await?;
        if info.completed.is_some() {
            return Err(s3_error!(
                NoSuchUpload,
                "the upload {upload_id} has been completed"
            ));
        }
        Ok((dir, info))
    }

    /// [`Gateway::upload`], a completed one included.
    async fn upload_info(&self, bucket: &str, key: &str, upload_id: &str) -> S3Result<(String, Info)> {
        names::bucket(bucket)?;
        let dir = names::upload_dir(bucket, upload_id)?;
        let mut raw = Vec::new();
        match self
            .client
            .get_to(&names::upload_info_key(&dir), &mut raw, &GetOptions::default())
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Err(s3_error!(NoSuchUpload, "the upload {upload_id} does not exist"))
            }
            Err(e) => return Err(s3(e)),
        }
        let info: Info = serde_json::from_slice(&raw)
            .map_err(|e| s3_error!(InternalError, "the upload's description is unreadable: {e}"))?;
        if info.key != key {
            return Err(s3_error!(
                NoSuchUpload,
                "the upload {upload_id} is not one of this key"
            ));
        }
        Ok((dir, info))
    }

    /// Every key under an upload's folder, with detail.
    async fn upload_keys(&self, dir: &str) -> S3Result<Vec<ObjectInfo>> {
        let mut out = vec![];
        let mut opts = ListOptions {
            detail: true,
            ..Default::default()
        };
        loop {
            let page = self.client.list_page(dir, &opts).await.map_err(s3)?;
            for k in &page.keys {
                match page.objects.iter().find(|o| &o.key == k) {
                    Some(o) => out.push(o.clone()),
                    None => match self.client.stat(k).await {
                        Ok(s) => out.push(ObjectInfo {
                            key: k.clone(),
                            size: s.size,
                            md5: s.md5,
                            etag: s.etag,
                            created: s.created.unwrap_or(0),
                            ..Default::default()
                        }),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(s3(e)),
                    },
                }
            }
            match page.next {
                Some(n) => opts.start = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// Deletes an upload's folder (best effort for each key).
    async fn remove_upload(&self, dir: &str) -> S3Result<()> {
        self.remove_keys(self.upload_keys(dir).await?).await
    }

    /// Marks an upload completed (its `info` kept a while, see
    /// [`COMPLETED_KEPT`]) and deletes its parts; if the mark cannot be
    /// written, deletes all of it.
    async fn retire_upload(&self, dir: &str, info: Info) -> S3Result<()> {
        let info_key = names::upload_info_key(dir);
        let raw = serde_json::to_vec(&info).map_err(|e| s3_error!(InternalError, "{e}"))?;
        let opts = PutOptions {
            replace: true,
            expires: Some(Expiry::After(COMPLETED_KEPT.min(self.upload_ttl))),
            ..Default::default()
        };
        if let Err(e) = self.client.put_bytes(&info_key, raw.into(), &opts).await {
            tracing::warn!(%dir, error = %e, "cannot mark the upload completed; a repeated Complete will find no upload");
            return self.remove_upload(dir).await;
        }
        let parts = self
            .upload_keys(dir)
            .await?
            .into_iter()
            .filter(|o| o.key != info_key);
        self.remove_keys(parts.collect()).await
    }

    /// Deletes `keys` (best effort for each).
    async fn remove_keys(&self, keys: Vec<ObjectInfo>) -> S3Result<()> {
        let client = &self.client;
        let failures: Vec<_> = futures::stream::iter(keys)
            .map(|o| async move {
                match client.delete(&o.key).await {
                    Err(e) if !e.is_not_found() => Some(e),
                    _ => None,
                }
            })
            .buffer_unordered(8)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        match failures.into_iter().next() {
            Some(e) => Err(s3(e)),
            None => Ok(()),
        }
    }
}

fn part_etag(o: &ObjectInfo) -> &str {
    if o.etag.is_empty() {
        &o.md5
    } else {
        &o.etag
    }
}

pub async fn create(
    gw: &Gateway,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = &req.input;
    names::object_key(&input.bucket, &input.key)?;
    gw.need_bucket(&input.bucket).await?;
    let meta = meta_in!(input).pairs()?;
    let id = names::new_upload_id();
    let dir = names::upload_dir(&input.bucket, &id)?;
    let info = Info {
        key: input.key.clone(),
        initiated: now_ms(),
        meta,
        completed: None,
    };
    let raw = serde_json::to_vec(&info).map_err(|e| s3_error!(InternalError, "{e}"))?;
    gw.client
        .put_bytes(&names::upload_info_key(&dir), raw.into(), &gw.upload_opts())
        .await
        .map_err(s3)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        upload_id: Some(id),
        ..Default::default()
    }))
}

pub async fn upload_part(
    gw: &Gateway,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let (dir, _) = gw.upload(&input.bucket, &input.key, &input.upload_id).await?;
    let part = names::part_key(&dir, input.part_number)?;
    let opts = PutOptions {
        content_md5: content_md5(input.content_md5.as_deref())?,
        ..gw.upload_opts()
    };
    let expected = Expected::new(checksums_of!(input), &headers, trailing_headers);
    let (written, verified) = stream_to(gw, &part, input.body, input.content_length, expected, opts).await?;
    let sums = PartSums::verified(&verified);
    if let (false, Some(md5)) = (sums.is_empty(), written.etag.as_deref()) {
        // For Complete to compare with its part list (`part_sums`).
        let raw = serde_json::to_string(&sums).map_err(|e| s3_error!(InternalError, "{e}"))?;
        // Also as its Content-Type, which listings carry: Complete reads
        // them from its listing of the parts, without a read per part.
        let opts = PutOptions {
            replace: true,
            meta: vec![("content-type".into(), raw.clone())],
            ..gw.upload_opts()
        };
        let kept = gw
            .client
            .put_bytes(&part_sums::key(&part, md5), raw.into(), &opts)
            .await;
        if let Err(e) = kept {
            tracing::warn!(%part, error = %e, "cannot keep the part's checksums; Complete will not compare them");
        }
    }
    Ok(S3Response::new(with_checksums!(
        UploadPartOutput {
            e_tag: written.etag.as_deref().map(etag::dto),
        },
        verified
    )))
}

/// `bytes=first-last` of `x-amz-copy-source-range`.
fn copy_range(raw: &str, len: u64) -> S3Result<[u64; 2]> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be bytes=first-last within the source"
        )
    };
    let r = ByteRange::parse(raw).map_err(|_| bad())?;
    let ByteRange::Bounded { first, last } = r else {
        return Err(bad());
    };
    if first > last || last >= len {
        return Err(s3_error!(
            InvalidRange,
            "the copy range {first}-{last} is outside the source's {len} bytes"
        ));
    }
    Ok([first, last + 1])
}

pub async fn upload_part_copy(
    gw: &Gateway,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = &req.input;
    let (dir, _) = gw.upload(&input.bucket, &input.key, &input.upload_id).await?;
    let part = names::part_key(&dir, input.part_number)?;
    let (src_bucket, src_key) = source(&input.copy_source)?;
    let conds = copy_source_conditions!(input);
    let stat = source_stat(gw, src_bucket, src_key, &conds).await?;
    let range = match input.copy_source_range.as_deref() {
        Some(r) => Some(copy_range(r, stat.size)?),
        None => None,
    };
    let opts = PutOptions {
        replace: true,
        allow_empty: true,
        // A part's ETag is the md5 of its bytes, which the master computes.
        ..gw.upload_opts()
    };
    let sources = [ComposeSource {
        key: stat.key.clone(),
        range,
        md5: Some(stat.md5.clone()),
        ..Default::default()
    }];
    let written = gw.client.compose(&part, &sources, &opts).await.map_err(s3)?;
    let e_tag = match (written.etag, written.md5) {
        (Some(e), _) | (None, Some(e)) => e,
        (None, None) => gw.client.stat(&part).await.map_err(s3)?.etag,
    };
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag::dto(&e_tag)),
            last_modified: Some(s3_time(SystemTime::now())),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub async fn list_parts(
    gw: &Gateway,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = &req.input;
    let (dir, _) = gw.upload(&input.bucket, &input.key, &input.upload_id).await?;
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let marker = input.part_number_marker.unwrap_or(0);
    let mut parts: Vec<Part> = gw
        .upload_keys(&dir)
        .await?
        .iter()
        .filter_map(|o| {
            let n = names::part_number(&dir, &o.key)?;
            (n > marker).then(|| Part {
                part_number: Some(n),
                size: Some(o.size as i64),
                e_tag: Some(etag::dto(part_etag(o))),
                last_modified: Some(ms(o.created)),
                ..Default::default()
            })
        })
        .collect();
    // An empty page (`max-parts=0`) is not truncated, as ListObjects
    // answers `max-keys=0`: it would give nowhere to go on from.
    let truncated = parts.len() > max && max > 0;
    parts.truncate(max);
    let next = parts.last().and_then(|p| p.part_number);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        upload_id: Some(input.upload_id.clone()),
        max_parts: Some(max as i32),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: truncated.then_some(next).flatten(),
        is_truncated: Some(truncated),
        parts: Some(parts),
        owner: Some(bucket::owner()),
        initiator: Some(Initiator {
            display_name: Some("trove".into()),
            id: Some("trove".into()),
        }),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

/// Upload infos ListMultipartUploads reads at once.
const INFO_READS: usize = 16;

pub async fn list_uploads(
    gw: &Gateway,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = &req.input;
    gw.need_bucket(&input.bucket).await?;
    let encode = matches!(
        input.encoding_type.as_ref().map(EncodingType::as_str),
        Some(EncodingType::URL)
    );
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let root = format!("{}{}/", names::UPLOADS, input.bucket);
    // Every upload of the bucket: (key, id, initiated). One listing entry
    // per upload (its folder, as a common prefix: its parts are not
    // walked), then the uploads' `info` read a few at a time.
    let mut ids = vec![];
    let mut opts = ListOptions {
        delimiter: Some("/".into()),
        ..ListOptions::default()
    };
    loop {
        let page = gw.client.list_page(&root, &opts).await.map_err(s3)?;
        ids.extend(
            page.prefixes
                .iter()
                .filter_map(|p| p.strip_prefix(&root)?.strip_suffix('/'))
                .map(str::to_string),
        );
        match page.next {
            Some(n) => opts.start = Some(n),
            None => break,
        }
    }
    let root = &root;
    let infos = futures::stream::iter(ids)
        .map(|id| async move {
            let mut raw = Vec::new();
            let key = format!("{root}{id}/info");
            gw.client
                .get_to(&key, &mut raw, &GetOptions::default())
                .await
                .ok()?;
            let info: Info = serde_json::from_slice(&raw).ok()?;
            info.completed.is_none().then_some((info.key, id, info.initiated))
        })
        .buffer_unordered(INFO_READS);
    let uploads: Vec<Upload> = infos
        .filter_map(|u| async move { u })
        .map(|(key, id, initiated)| Upload { key, id, initiated })
        .collect()
        .await;
    let page = uploads_page(
        uploads,
        &UploadsQuery {
            prefix: &prefix,
            delimiter: input.delimiter.as_deref().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.as_deref().unwrap_or_default(),
            id_marker: input.upload_id_marker.as_deref().unwrap_or_default(),
            max,
        },
    );
    let common_prefixes = page
        .prefixes
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(maybe(encode, p)),
        })
        .collect::<Vec<_>>();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket.clone()),
        prefix: Some(maybe(encode, prefix)),
        delimiter: input.delimiter.clone(),
        key_marker: input.key_marker.clone().map(|k| maybe(encode, k)),
        upload_id_marker: input.upload_id_marker.clone(),
        max_uploads: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_key_marker: page.next_key_marker.map(|k| maybe(encode, k)),
        next_upload_id_marker: page.next_id_marker,
        common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
        uploads: Some(
            page.uploads
                .into_iter()
                .map(|u| MultipartUpload {
                    key: Some(maybe(encode, u.key)),
                    upload_id: Some(u.id),
                    initiated: Some(ms(u.initiated)),
                    owner: Some(bucket::owner()),
                    initiator: Some(Initiator {
                        display_name: Some("trove".into()),
                        id: Some("trove".into()),
                    }),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    ..Default::default()
                })
                .collect(),
        ),
        encoding_type: input.encoding_type.clone(),
        ..Default::default()
    }))
}

/// One upload in progress, as ListMultipartUploads lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Upload {
    key: String,
    id: String,
    /// Unix ms.
    initiated: u64,
}

/// What a ListMultipartUploads asks for.
struct UploadsQuery<'a> {
    prefix: &'a str,
    delimiter: Option<&'a str>,
    key_marker: &'a str,
    id_marker: &'a str,
    max: usize,
}

/// One page of uploads, and the common prefixes the delimiter rolls up.
#[derive(Debug, PartialEq)]
struct UploadsPage {
    uploads: Vec<Upload>,
    prefixes: Vec<String>,
    truncated: bool,
    next_key_marker: Option<String>,
    next_id_marker: Option<String>,
}

/// The page of `uploads` (in any order) that `q` asks for, as S3 lists
/// them: by key, a key's uploads by when they began; after the key
/// marker (and, for that key, after the upload the id marker names);
/// keys under the prefix, those with the delimiter after it rolled up
/// into one common prefix each. Uploads and common prefixes each count
/// towards `max`.
fn uploads_page(mut uploads: Vec<Upload>, q: &UploadsQuery<'_>) -> UploadsPage {
    uploads.retain(|u| u.key.starts_with(q.prefix));
    uploads.sort_by(|a, b| (&a.key, a.initiated, &a.id).cmp(&(&b.key, b.initiated, &b.id)));
    // Where the markers point: past the upload the id marker names, or,
    // should that one have ended since, past the key marker's uploads
    // with smaller ids (S3's rule); without an id marker, past every
    // upload of the key marker.
    let named = uploads
        .iter()
        .position(|u| u.key == q.key_marker && u.id == q.id_marker)
        .filter(|_| !q.id_marker.is_empty());
    let after_markers = |i: usize, u: &Upload| match named {
        Some(at) => i > at,
        None if !q.id_marker.is_empty() && u.key == q.key_marker => u.id.as_str() > q.id_marker,
        None => u.key.as_str() > q.key_marker,
    };
    // A key marker that is a common prefix stands for all it rolled up.
    let marker_rolls_up = crate::list::is_common_prefix(q.key_marker, q.prefix, q.delimiter);
    let rolled_up = |key: &str| marker_rolls_up && key.starts_with(q.key_marker);
    let mut page = UploadsPage {
        uploads: vec![],
        prefixes: vec![],
        truncated: false,
        next_key_marker: None,
        next_id_marker: None,
    };
    let listed = uploads
        .into_iter()
        .enumerate()
        .filter(|(i, u)| after_markers(*i, u) && !rolled_up(&u.key))
        .map(|(_, u)| u);
    for u in listed {
        let common = q.delimiter.and_then(|d| {
            let rest = &u.key[q.prefix.len()..];
            rest.find(d)
                .map(|i| format!("{}{}", q.prefix, &rest[..i + d.len()]))
        });
        if common.as_ref().is_some_and(|p| page.prefixes.last() == Some(p)) {
            continue;
        }
        if page.uploads.len() + page.prefixes.len() == q.max {
            // An empty page (`max-uploads=0`) is not truncated, as for
            // `max-parts=0`.
            page.truncated = q.max > 0;
            break;
        }
        match common {
            Some(p) => {
                page.next_key_marker = Some(p.clone());
                page.next_id_marker = None;
                page.prefixes.push(p);
            }
            None => {
                page.next_key_marker = Some(u.key.clone());
                page.next_id_marker = Some(u.id.clone());
                page.uploads.push(u);
            }
        }
    }
    if !page.truncated {
        page.next_key_marker = None;
        page.next_id_marker = None;
    }
    page
}

pub async fn abort(
    gw: &Gateway,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = &req.input;
    let (dir, _) = gw.upload(&input.bucket, &input.key, &input.upload_id).await?;
    gw.remove_upload(&dir).await?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

/// Aborts every upload of a bucket (when the bucket is deleted).
pub async fn abort_all(gw: &Gateway, bucket: &str) {
    let root = format!("{}{bucket}/", names::UPLOADS);
    if let Err(e) = gw.remove_upload(&root).await {
        tracing::warn!(bucket, error = %e, "could not remove the bucket's uploads; they expire with their TTL");
    }
}

/// Checks a Complete's part list against the stored parts: ascending
/// numbers (gaps allowed), each stored with the ETag given, each but the
/// last at least [`MIN_PART`]. Returns the stored parts in order.
fn check_parts<'a>(
    dir: &str,
    asked: &[CompletedPart],
    stored: &'a [ObjectInfo],
) -> S3Result<Vec<&'a ObjectInfo>> {
    if asked.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "the part list is empty: complete needs at least one part"
        ));
    }
    let mut out = vec![];
    let mut previous = 0;
    for (i, p) in asked.iter().enumerate() {
        let n = p
            .part_number
            .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
        if n <= previous {
            return Err(s3_error!(
                InvalidPartOrder,
                "part numbers must be in ascending order"
            ));
        }
        previous = n;
        let want = names::part_key(dir, n)?;
        let o = stored
            .iter()
            .find(|o| o.key == want)
            .ok_or_else(|| s3_error!(InvalidPart, "part {n} was not uploaded"))?;
        let given = p
            .e_tag
            .as_ref()
            .ok_or_else(|| s3_error!(InvalidPart, "part {n} has no ETag"))?;
        if !etag::same(given.value(), part_etag(o)) {
            return Err(s3_error!(InvalidPart, "part {n}'s ETag is not the one uploaded"));
        }
        if i + 1 < asked.len() && o.size < MIN_PART {
            return Err(s3_error!(
                EntityTooSmall,
                "part {n} is {} bytes; every part but the last must be at least 5 MiB",
                o.size
            ));
        }
        out.push(o);
    }
    Ok(out)
}

/// The checksums a Complete lists for its parts, compared with those
/// each part was uploaded with (`part_sums`; `parts` are `asked`'s stored
/// parts, in order, as [`check_parts`] returns them).
fn check_part_sums(asked: &[CompletedPart], parts: &[&ObjectInfo], stored: &[ObjectInfo]) -> S3Result<()> {
    for (p, o) in asked.iter().zip(parts) {
        let listed = PartSums::listed(p);
        if listed.is_empty() {
            continue;
        }
        let sums_key = part_sums::key(&o.key, part_etag(o));
        // None kept (uploaded without checksums, or not listed with its
        // Content-Type): nothing to compare.
        let kept = stored
            .iter()
            .find(|s| s.key == sums_key)
            .and_then(|s| s.content_type.as_deref())
            .and_then(|raw| serde_json::from_str::<PartSums>(raw).ok());
        let Some(kept) = kept else { continue };
        kept.check(p.part_number.unwrap_or_default(), &listed)?;
    }
    Ok(())
}

/// The ETag of the key's current value, `None` when it has none.
async fn current_etag(gw: &Gateway, key: &str) -> S3Result<Option<String>> {
    match gw.client.stat(key).await {
        Ok(s) => Ok(Some(s.etag)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(s3(e)),
    }
}

/// `If-Match` / `If-None-Match` of a write, checked against the key's
/// current value.
async fn precheck(gw: &Gateway, key: &str, opts: &PutOptions) -> S3Result<()> {
    use trove_common::conditions::{Current, Failed, Preconditions};
    let conditions = Preconditions::parse(opts.if_match.as_deref(), opts.if_none_match.as_deref())
        .map_err(|e| s3_error!(InvalidArgument, "{e}"))?;
    let current = match gw.client.stat(key).await {
        Ok(s) => Some(s),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(s3(e)),
    };
    let current = current.as_ref().map(|s| Current {
        etag: &s.etag,
        modified: s.last_modified.unwrap_or(UNIX_EPOCH),
    });
    match conditions.check(current) {
        Ok(()) => Ok(()),
        Err(Failed::Absent) => Err(s3_error!(NoSuchKey, "{}", Failed::Absent)),
        Err(e) => Err(s3_error!(PreconditionFailed, "{e}")),
    }
}

pub async fn complete(
    gw: &Gateway,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = &req.input;
    let target = names::object_key(&input.bucket, &input.key)?;
    if !gw.bucket_exists(&input.bucket).await? {
        return Err(no_bucket(&input.bucket));
    }
    let (dir, info) = gw
        .upload_info(&input.bucket, &input.key, &input.upload_id)
        .await?;
    let asked = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.as_deref())
        .unwrap_or_default();
    // The object's URL, as AWS gives it (path-style, on the host the
    // client called).
    let path = format!("/{}/{}", input.bucket, crate::encoding::url(&input.key));
    let location = match req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}{path}"),
        None => path,
    };
    let output = |e_tag: &str| CompleteMultipartUploadOutput {
        location: Some(location.clone()),
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(etag::dto(e_tag)),
        ..Default::default()
    };
    if let Some(done) = &info.completed {
        // Completed already: the same answer for the same list, while the
        // object is still the one it made.
        let current = current_etag(gw, &target).await?;
        if part_list(asked).as_ref() == Some(&done.parts) && current.as_deref() == Some(done.e_tag.as_str()) {
            return Ok(S3Response::new(output(&done.e_tag)));
        }
        return Err(s3_error!(
            NoSuchUpload,
            "the upload {} has been completed (with another part list, or its object has changed since)",
            input.upload_id
        ));
    }
    let stored = gw.upload_keys(&dir).await?;
    let parts = check_parts(&dir, asked, &stored)?;
    check_part_sums(asked, &parts, &stored)?;
    let etags: Vec<&str> = parts.iter().map(|o| part_etag(o)).collect();
    let e_tag =
        etag::multipart(&etags).ok_or_else(|| s3_error!(InternalError, "a stored part has no md5 ETag"))?;
    let sources: Vec<ComposeSource> = parts
        .iter()
        .map(|o| ComposeSource {
            key: o.key.clone(),
            md5: (!o.md5.is_empty()).then(|| o.md5.clone()),
            ..Default::default()
        })
        .collect();
    let opts = PutOptions {
        replace: true,
        allow_empty: true,
        meta: info.meta.clone(),
        etag: Some(e_tag.clone()),
        // Each part's size, for GetObject/HeadObject `partNumber`.
        keep_parts: true,
        ..etag::destination_conditions(input.if_match.as_ref(), input.if_none_match.as_ref())
    };
    // Conditions are checked here too, so that a refusal is a plain `412`
    // before the `200` below starts; the master checks them again,
    // atomically, when it writes.
    if opts.if_match.is_some() || opts.if_none_match.is_some() {
        precheck(gw, &target, &opts).await?;
    }
    // The parts are checked; building the object can take a while (the
    // volumes concatenate every part). s3s answers `200` at once and
    // sends whitespace until this finishes, then the result or the error
    // as XML, as S3 does: a client's read timeout never fires mid-compose.
    let done = output(&e_tag);
    let completed = Info {
        completed: Some(Completed {
            e_tag,
            parts: part_list(asked).unwrap_or_default(),
        }),
        ..info
    };
    let gw = gw.clone();
    let build = async move {
        gw.client.compose(&target, &sources, &opts).await.map_err(s3)?;
        if let Err(e) = gw.retire_upload(&dir, completed).await {
            tracing::warn!(%dir, error = %e, "completed, but the parts could not all be deleted; they expire with their TTL");
        }
        Ok(done)
    };
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        future: Some(Box::pin(build)),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(dir: &str, parts: &[(i32, u64, &str)]) -> Vec<ObjectInfo> {
        parts
            .iter()
            .map(|&(n, size, md5)| ObjectInfo {
                key: names::part_key(dir, n).unwrap(),
                size,
                md5: md5.into(),
                etag: md5.into(),
                ..Default::default()
            })
            .collect()
    }

    fn asked(parts: &[(i32, &str)]) -> Vec<CompletedPart> {
        parts
            .iter()
            .map(|&(n, e)| CompletedPart {
                part_number: Some(n),
                e_tag: Some(ETag::Strong(e.into())),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn complete_checks_order_etags_and_sizes() {
        let dir = "/.s3/uploads/b12/x/";
        let (a, b, c) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
        let s = stored(dir, &[(1, MIN_PART, &a), (3, MIN_PART, &b), (4, 10, &c)]);
        let code = |r: S3Result<Vec<&ObjectInfo>>| r.map(|v| v.len()).map_err(|e| e.code().clone());
        assert_eq!(
            code(check_parts(dir, &asked(&[(1, &a), (3, &b), (4, &c)]), &s)),
            Ok(3),
            "gaps are fine"
        );
        assert_eq!(
            code(check_parts(dir, &asked(&[(1, &a), (4, &c)]), &s)),
            Ok(2),
            "parts may be left out"
        );
        assert_eq!(
            code(check_parts(dir, &asked(&[(3, &b), (1, &a)]), &s)),
            Err(s3s::S3ErrorCode::InvalidPartOrder)
        );
        assert_eq!(
            code(check_parts(dir, &asked(&[(1, &b)]), &s)),
            Err(s3s::S3ErrorCode::InvalidPart)
        );
        assert_eq!(
            code(check_parts(dir, &asked(&[(2, &a)]), &s)),
            Err(s3s::S3ErrorCode::InvalidPart)
        );
        assert_eq!(
            code(check_parts(
                dir,
                &asked(&[(4, &c), (5, &c)]),
                &stored(dir, &[(4, 10, &c), (5, 10, &c)])
            )),
            Err(s3s::S3ErrorCode::EntityTooSmall)
        );
        assert_eq!(
            code(check_parts(dir, &[], &s)),
            Err(s3s::S3ErrorCode::MalformedXML)
        );
    }

    #[test]
    fn copy_ranges_are_inclusive_and_checked() {
        assert_eq!(copy_range("bytes=0-9", 100).unwrap(), [0, 10]);
        assert!(copy_range("bytes=0-100", 100).is_err());
        assert!(copy_range("bytes=5-", 100).is_err());
        assert!(copy_range("nonsense", 100).is_err());
    }

    fn upload(key: &str, id: &str, initiated: u64) -> Upload {
        Upload {
            key: key.into(),
            id: id.into(),
            initiated,
        }
    }

    fn query<'a>(
        delimiter: Option<&'a str>,
        key_marker: &'a str,
        id_marker: &'a str,
        max: usize,
    ) -> UploadsQuery<'a> {
        UploadsQuery {
            prefix: "",
            delimiter,
            key_marker,
            id_marker,
            max,
        }
    }

    fn listed(page: &UploadsPage) -> Vec<String> {
        let mut out: Vec<String> = page
            .uploads
            .iter()
            .map(|u| format!("{}@{}", u.key, u.id))
            .collect();
        out.extend(page.prefixes.iter().map(|p| format!("prefix {p}")));
        out
    }

    #[test]
    fn uploads_list_by_key_then_start_and_page_with_both_markers() {
        // Two uploads of one key: the older first, whatever their ids.
        let all = vec![
            upload("b", "z1", 10),
            upload("a", "x", 5),
            upload("b", "a2", 20),
            upload("c", "m", 1),
        ];
        let first = uploads_page(all.clone(), &query(None, "", "", 2));
        assert_eq!(listed(&first), ["a@x", "b@z1"]);
        assert!(first.truncated);
        let (key, id) = (first.next_key_marker.unwrap(), first.next_id_marker.unwrap());
        assert_eq!((key.as_str(), id.as_str()), ("b", "z1"));
        let rest = uploads_page(all.clone(), &query(None, &key, &id, 2));
        assert_eq!(listed(&rest), ["b@a2", "c@m"]);
        assert!(!rest.truncated && rest.next_key_marker.is_none());
        // A key marker alone skips every upload of that key.
        assert_eq!(
            listed(&uploads_page(all.clone(), &query(None, "b", "", 10))),
            ["c@m"]
        );
        // An empty page is not truncated: it names nowhere to go on from.
        let none = uploads_page(all, &query(None, "", "", 0));
        assert!(listed(&none).is_empty() && !none.truncated && none.next_key_marker.is_none());
    }

    #[test]
    fn a_delimiter_rolls_keys_up_into_common_prefixes() {
        let all = vec![
            upload("c/d", "1", 1),
            upload("c/e", "2", 2),
            upload("a", "3", 3),
            upload("e/f", "4", 4),
        ];
        let page = uploads_page(all.clone(), &query(Some("/"), "", "", 10));
        assert_eq!(listed(&page), ["a@3", "prefix c/", "prefix e/"]);
        // Paged one entry at a time, a common prefix is a marker too.
        let mut seen = vec![];
        let (mut key, mut id) = (String::new(), String::new());
        for _ in 0..10 {
            let page = uploads_page(all.clone(), &query(Some("/"), &key, &id, 1));
            seen.extend(listed(&page));
            if !page.truncated {
                break;
            }
            key = page.next_key_marker.unwrap();
            id = page.next_id_marker.unwrap_or_default();
        }
        assert_eq!(seen, ["a@3", "prefix c/", "prefix e/"]);
        // Under a prefix, only its keys, rolled up after the prefix.
        let under = UploadsQuery {
            prefix: "c/",
            ..query(Some("/"), "", "", 10)
        };
        assert_eq!(listed(&uploads_page(all, &under)), ["c/d@1", "c/e@2"]);
    }

    #[test]
    fn markers_hold_when_a_key_ends_in_the_delimiter_or_the_named_upload_ended() {
        // Under prefix `a` with delimiter `a/`, `a/` is a key (the
        // delimiter is looked for after the prefix), not a common prefix.
        let all = vec![upload("a/", "1", 1), upload("a/x", "2", 2)];
        let q = UploadsQuery {
            prefix: "a",
            ..query(Some("a/"), "a/", "1", 10)
        };
        assert_eq!(listed(&uploads_page(all, &q)), ["a/x@2"]);
        // The upload the id marker names has ended since: the key's other
        // uploads with larger ids still come.
        let all = vec![upload("k", "b", 2), upload("k", "c", 3), upload("l", "d", 1)];
        let page = uploads_page(all, &query(None, "k", "a", 10));
        assert_eq!(listed(&page), ["k@b", "k@c", "l@d"]);
    }
}
