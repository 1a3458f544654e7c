//! ListObjects (v1, Marker/NextMarker), ListObjectsV2 (continuation
//! tokens, StartAfter) and ListObjectVersions (every object is its only,
//! `null`, version). One page of the master's listing — prefix, delimiter,
//! exclusive start, detail — answers one S3 page; `encoding-type=url` is
//! applied here (s3s does not).

use crate::encoding::{self, maybe, Resume};
use crate::error::s3;
use crate::gateway::{s3_time, Gateway};
use crate::{bucket, etag, names};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trove_client::ListOptions;

/// S3's default and largest page.
const MAX_KEYS: i32 = 1000;

/// One object of a listing.
struct Entry {
    key: String,
    size: u64,
    etag: String,
    modified: SystemTime,
}

/// One page of a bucket's listing, in S3 names.
struct Listing {
    entries: Vec<Entry>,
    prefixes: Vec<String>,
    truncated: bool,
    /// Where the next page starts (the last entry returned).
    last: Option<Resume>,
}

fn page_size(max_keys: Option<i32>) -> S3Result<usize> {
    match max_keys {
        None => Ok(MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
    }
}

/// A v1 marker (or a ListObjectVersions key marker): past a whole common
/// prefix when it is one, else after it (a key).
///
/// A common prefix is the listing's prefix, then everything up to and
/// including the *first* delimiter after it. A marker that merely ends
/// with the delimiter may be a key: with prefix `a` and delimiter `a/`,
/// `a/` holds no delimiter after the prefix (the search starts at `/`),
/// so it is a key, and `a/x` after it must still be listed.
fn marker_resume(marker: &str, prefix: &str, delimiter: Option<&str>) -> Resume {
    if is_common_prefix(marker, prefix, delimiter) {
        Resume::PastPrefix(marker.to_string())
    } else {
        Resume::After(marker.to_string())
    }
}

/// Whether `marker` is a common prefix of a listing under `prefix` rolled
/// up at `delimiter` (see [`marker_resume`]), rather than a key.
pub(crate) fn is_common_prefix(marker: &str, prefix: &str, delimiter: Option<&str>) -> bool {
    delimiter.filter(|d| !d.is_empty()).is_some_and(|d| {
        marker
            .strip_prefix(prefix)
            .and_then(|rest| rest.find(d).map(|at| at + d.len() == rest.len()))
            .unwrap_or(false)
    })
}

/// Lists one page of `bucket`.
async fn list_bucket(
    gw: &Gateway,
    bucket_name: &str,
    prefix: &str,
    delimiter: Option<&str>,
    from: Option<Resume>,
    max: usize,
) -> S3Result<Listing> {
    gw.need_bucket(bucket_name).await?;
    let root = names::bucket_marker(bucket_name);
    let delimiter = delimiter.filter(|d| !d.is_empty());
    if max == 0 {
        return Ok(Listing {
            entries: vec![],
            prefixes: vec![],
            truncated: false,
            last: None,
        });
    }
    let mut opts = ListOptions {
        page_size: Some(max),
        delimiter: delimiter.map(str::to_string),
        detail: true,
        ..Default::default()
    };
    // Keys at or before this are not returned (the bucket's own marker,
    // at least, which sorts before every object of the bucket).
    let floor = match &from {
        None => root.clone(),
        Some(Resume::After(k)) => format!("{root}{k}"),
        Some(Resume::PastPrefix(p)) => {
            let past = names::successor(&format!("{root}{p}"))
                .ok_or_else(|| s3_error!(InvalidArgument, "bad marker"))?;
            opts.start = Some(past.clone());
            past
        }
    };
    if opts.start.is_none() {
        opts.after = Some(floor.clone());
    }
    let full_prefix = format!("{root}{prefix}");
    let page = gw.client.list_page(&full_prefix, &opts).await.map_err(s3)?;
    let mut entries = vec![];
    // `objects` holds one entry per key, in the same bytewise order: one
    // walk pairs them (a search per key made a 1,000-key page quadratic).
    let mut objects = page.objects.iter().peekable();
    for k in &page.keys {
        if k.as_str() <= floor.as_str() && opts.start.is_none() {
            continue;
        }
        let Some(name) = names::s3_key(bucket_name, k) else {
            continue;
        };
        while objects.next_if(|o| o.key.as_str() < k.as_str()).is_some() {}
        let entry = match objects.next_if(|o| &o.key == k) {
            Some(o) => Entry {
                key: name.to_string(),
                size: o.size,
                etag: if o.etag.is_empty() {
                    o.md5.clone()
                } else {
                    o.etag.clone()
                },
                modified: UNIX_EPOCH + Duration::from_millis(o.created),
            },
            None => match gw.client.stat(k).await {
                // A master without `detail`: ask for each key.
                Ok(s) => Entry {
                    key: name.to_string(),
                    size: s.size,
                    etag: s.etag,
                    modified: s.last_modified.unwrap_or(UNIX_EPOCH),
                },
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(s3(e)),
            },
        };
        entries.push(entry);
    }
    let prefixes: Vec<String> = page
        .prefixes
        .iter()
        .filter_map(|p| p.strip_prefix(&root).map(str::to_string))
        .collect();
    let last = match (entries.last(), prefixes.last()) {
        (Some(e), Some(p)) if p.as_str() > e.key.as_str() => Some(Resume::PastPrefix(p.clone())),
        (Some(e), _) => Some(Resume::After(e.key.clone())),
        (None, Some(p)) => Some(Resume::PastPrefix(p.clone())),
        (None, None) => None,
    };
    Ok(Listing {
        entries,
        prefixes,
        truncated: page.next.is_some(),
        last,
    })
}

fn url_encoding(encoding_type: Option<&EncodingType>) -> S3Result<bool> {
    match encoding_type.map(EncodingType::as_str) {
        None => Ok(false),
        Some(EncodingType::URL) => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "encoding-type `{other}` is not supported (only `url`)"
        )),
    }
}

fn resume_name(r: &Resume) -> String {
    match r {
        Resume::After(k) | Resume::PastPrefix(k) => k.clone(),
    }
}

fn objects(entries: Vec<Entry>, encode: bool, owner: bool) -> Vec<Object> {
    entries
        .into_iter()
        .map(|e| Object {
            key: Some(maybe(encode, e.key)),
            size: Some(e.size as i64),
            e_tag: Some(etag::dto(&e.etag)),
            last_modified: Some(s3_time(e.modified)),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            owner: owner.then(bucket::owner),
            ..Default::default()
        })
        .collect()
}

fn common_prefixes(prefixes: Vec<String>, encode: bool) -> Vec<CommonPrefix> {
    prefixes
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(maybe(encode, p)),
        })
        .collect()
}

pub async fn list_objects(
    gw: &Gateway,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let encode = url_encoding(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let from = input
        .marker
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| marker_resume(m, &prefix, input.delimiter.as_deref()));
    let max = page_size(input.max_keys)?;
    let l = list_bucket(gw, &input.bucket, &prefix, input.delimiter.as_deref(), from, max).await?;
    let next_marker = l.truncated.then(|| l.last.as_ref().map(resume_name)).flatten();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(maybe(encode, prefix)),
        marker: Some(maybe(encode, input.marker.unwrap_or_default())),
        max_keys: Some(max as i32),
        delimiter: input.delimiter.map(|d| maybe(encode, d)),
        is_truncated: Some(l.truncated),
        next_marker: next_marker.map(|m| maybe(encode, m)),
        contents: Some(objects(l.entries, encode, true)),
        common_prefixes: Some(common_prefixes(l.prefixes, encode)),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub async fn list_objects_v2(
    gw: &Gateway,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let encode = url_encoding(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let from = match input.continuation_token.as_deref() {
        Some(t) => Some(encoding::parse_token(t).ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "the continuation token is not one this gateway gave"
            )
        })?),
        None => input
            .start_after
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| Resume::After(s.to_string())),
    };
    let max = page_size(input.max_keys)?;
    let l = list_bucket(gw, &input.bucket, &prefix, input.delimiter.as_deref(), from, max).await?;
    let next = if l.truncated {
        l.last.as_ref().map(encoding::token)
    } else {
        None
    };
    let count = l.entries.len() + l.prefixes.len();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(maybe(encode, prefix)),
        max_keys: Some(max as i32),
        key_count: Some(count as i32),
        continuation_token: input.continuation_token,
        next_continuation_token: next,
        is_truncated: Some(l.truncated),
        start_after: input.start_after.map(|s| maybe(encode, s)),
        delimiter: input.delimiter.map(|d| maybe(encode, d)),
        contents: Some(objects(l.entries, encode, input.fetch_owner.unwrap_or(false))),
        common_prefixes: Some(common_prefixes(l.prefixes, encode)),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub async fn list_object_versions(
    gw: &Gateway,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    let encode = url_encoding(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let from = input
        .key_marker
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| marker_resume(m, &prefix, input.delimiter.as_deref()));
    let max = page_size(input.max_keys)?;
    let l = list_bucket(gw, &input.bucket, &prefix, input.delimiter.as_deref(), from, max).await?;
    let next_key = l.truncated.then(|| l.last.as_ref().map(resume_name)).flatten();
    let versions = l
        .entries
        .into_iter()
        .map(|e| ObjectVersion {
            key: Some(maybe(encode, e.key)),
            version_id: Some("null".into()),
            is_latest: Some(true),
            size: Some(e.size as i64),
            e_tag: Some(etag::dto(&e.etag)),
            last_modified: Some(s3_time(e.modified)),
            storage_class: Some(ObjectVersionStorageClass::from_static(
                ObjectVersionStorageClass::STANDARD,
            )),
            owner: Some(bucket::owner()),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(maybe(encode, prefix)),
        key_marker: Some(maybe(encode, input.key_marker.unwrap_or_default())),
        version_id_marker: input.version_id_marker,
        max_keys: Some(max as i32),
        delimiter: input.delimiter.map(|d| maybe(encode, d)),
        is_truncated: Some(l.truncated),
        next_version_id_marker: next_key.as_ref().map(|_| "null".to_string()),
        next_key_marker: next_key.map(|m| maybe(encode, m)),
        versions: Some(versions),
        common_prefixes: Some(common_prefixes(l.prefixes, encode)),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_that_are_common_prefixes_skip_the_prefix() {
        assert_eq!(
            marker_resume("a/", "", Some("/")),
            Resume::PastPrefix("a/".into())
        );
        assert_eq!(marker_resume("a/", "a/", Some("/")), Resume::After("a/".into()));
        assert_eq!(marker_resume("a/b", "", Some("/")), Resume::After("a/b".into()));
        assert_eq!(marker_resume("a/", "", None), Resume::After("a/".into()));
        assert_eq!(
            marker_resume("a/b/", "", Some("/")),
            Resume::After("a/b/".into()),
            "a key inside the common prefix `a/`"
        );
        assert_eq!(
            marker_resume("x/y/", "x/", Some("/")),
            Resume::PastPrefix("x/y/".into())
        );
        // A multi-character delimiter that straddles the prefix: `a/` is a
        // key (no `a/` after the prefix `a`), listed before `a/x` and `a/y`.
        assert_eq!(marker_resume("a/", "a", Some("a/")), Resume::After("a/".into()));
        assert_eq!(
            marker_resume("aba/", "a", Some("a/")),
            Resume::PastPrefix("aba/".into())
        );
        assert_eq!(page_size(None).unwrap(), 1000);
        assert_eq!(page_size(Some(5000)).unwrap(), 1000);
        assert_eq!(page_size(Some(0)).unwrap(), 0);
        assert!(page_size(Some(-1)).is_err());
    }
}
