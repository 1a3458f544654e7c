//! `HEAD /key`: what the master's index knows about a key, from the
//! headers of its `302` — without touching a volume.

use crate::client::{key, status_error, Client};
use crate::error::{Error, Result};
use reqwest::header::{HeaderMap, ETAG, LAST_MODIFIED, LOCATION};
use reqwest::{Method, Response};
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trove_common::http::{
    CONTENT_MD5, KEY_BALANCE, KEY_CREATED, KEY_EXPIRES, KEY_PARTS, KEY_PART_OFFSET, KEY_PART_SIZE,
    KEY_SHA256, KEY_SIZE, KEY_VOLUMES, TROVE_PART,
};
use trove_common::record::{STORED_HEADERS, USER_META_PREFIX};

/// A key's record, as the master's redirect describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stat {
    /// The key.
    pub key: String,
    /// Length of the value in bytes.
    pub size: u64,
    /// Hex md5 of the whole value.
    pub md5: String,
    /// Hex sha256 of the whole value.
    pub sha256: String,
    /// `host:port` of every volume holding a replica.
    pub volumes: Vec<String>,
    /// The stored volumes are the key's current placement.
    pub balanced: bool,
    /// When the value was written, Unix ms (from `Key-Created`, if sent).
    pub created: Option<u64>,
    /// When the key expires, Unix ms (from `Key-Expires`, if it has a TTL).
    pub expires: Option<u64>,
    /// Where the master sent the reader (one healthy replica, signed when
    /// the cluster has a secret).
    pub location: String,
    /// The stored metadata, `(lowercase header name, value)`:
    /// `content-type`, `content-disposition`, `cache-control`,
    /// `content-encoding`, `content-language`, `expires` and every
    /// `x-amz-meta-*`, in the order the master sent them.
    pub meta: Vec<(String, String)>,
    /// The value's ETag, unquoted: the one the master reports (`ETag`),
    /// else the hex md5.
    pub etag: String,
    /// The id of the write that stored this value (`Key-Write`), when the
    /// master sends one; the redirect is pinned to it.
    pub write: Option<String>,
    /// How many parts the value was composed from (`Key-Parts`), for a
    /// value composed with its parts kept (S3 multipart); `None` for any
    /// other value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// The byte range of the part asked for with [`Client::stat_part`],
    /// when the value has that part.
    #[serde(skip)]
    pub part: Option<Range<u64>>,
    /// When the value was written (`Last-Modified`, else `Key-Created`).
    #[serde(skip)]
    pub last_modified: Option<SystemTime>,
    /// Every header of the master's answer, for callers that need more
    /// (an S3 gateway passing metadata on).
    #[serde(skip)]
    pub headers: HeaderMap,
}

impl Stat {
    /// Reads a `302` answer for `key`.
    pub(crate) fn from_redirect(key: &str, url: &str, resp: &Response) -> Result<Stat> {
        let headers = resp.headers();
        let text = |name: &str| -> Result<String> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| Error::Protocol {
                    url: url.to_string(),
                    message: format!("the redirect has no {name} header"),
                })
        };
        let number = |name: &str| -> Result<Option<u64>> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map(Some)
                    .ok_or_else(|| Error::Protocol {
                        url: url.to_string(),
                        message: format!("{name} is not a number"),
                    }),
            }
        };
        let md5 = text(CONTENT_MD5)?;
        let created = number(KEY_CREATED)?;
        // Metadata values are UTF-8 (`x-amz-meta-city: Zürich`, a
        // `filename="café.txt"`), which `HeaderValue::to_str` refuses as
        // not visible ASCII: read the bytes, so that no value is dropped
        // (and lost for good by a copy that writes `meta` back).
        let meta = headers
            .iter()
            .filter(|(name, _)| is_meta_header(name.as_str()))
            .filter_map(|(name, v)| {
                let value = String::from_utf8(v.as_bytes().to_vec()).ok()?;
                Some((name.as_str().to_string(), value))
            })
            .collect();
        let etag = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|e| e.trim().trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| md5.clone());
        let last_modified = headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .or_else(|| created.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)));
        let part = match (number(KEY_PART_OFFSET)?, number(KEY_PART_SIZE)?) {
            (Some(offset), Some(size)) => Some(offset..offset + size),
            _ => None,
        };
        let parts = number(KEY_PARTS)?
            .map(|n| {
                u32::try_from(n).map_err(|_| Error::Protocol {
                    url: url.to_string(),
                    message: format!("{KEY_PARTS} is out of range"),
                })
            })
            .transpose()?;
        Ok(Stat {
            meta,
            etag,
            parts,
            part,
            write: headers
                .get(KEY_WRITE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            last_modified,
            key: key.to_string(),
            size: number(KEY_SIZE)?.ok_or_else(|| Error::Protocol {
                url: url.to_string(),
                message: format!("the redirect has no {KEY_SIZE} header"),
            })?,
            md5,
            sha256: text(KEY_SHA256)?,
            volumes: text(KEY_VOLUMES)?
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect(),
            balanced: text(KEY_BALANCE).is_ok_and(|b| b == "balanced"),
            created,
            expires: number(KEY_EXPIRES)?,
            location: text(LOCATION.as_str())?,
            headers: headers.clone(),
        })
    }
}

pub use trove_common::http::KEY_WRITE;

/// Whether a header (lowercase name) is object metadata the master stores:
/// one of [`STORED_HEADERS`], or `x-amz-meta-<name>`.
pub fn is_meta_header(name: &str) -> bool {
    STORED_HEADERS.contains(&name)
        || name
            .strip_prefix(USER_META_PREFIX)
            .is_some_and(|rest| !rest.is_empty())
}

/// Answers a `HEAD`/`GET` on the master: the record on `302`, the mapped
/// error otherwise.
pub(crate) async fn redirect(key: &str, url: &str, resp: Response) -> Result<Stat> {
    if resp.status() == reqwest::StatusCode::FOUND {
        Stat::from_redirect(key, url, &resp)
    } else {
        Err(status_error(key, url, resp).await)
    }
}

impl Client {
    /// The key's size, digests, replicas and expiry (`HEAD` on the master;
    /// no volume is contacted). [`Error::NotFound`] when absent.
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// match client.stat("/photos/cat.jpg").await {
    ///     Ok(stat) => println!("{} bytes, sha256 {}", stat.size, stat.sha256),
    ///     Err(e) if e.is_not_found() => println!("no such key"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stat(&self, raw_key: &str) -> Result<Stat> {
        let k = &key(raw_key)?;
        self.call(&k.url_path(), |url, _| async move {
            let resp = self.send_small(Method::HEAD, &url, |r| r).await?;
            redirect(k.as_str(), &url, resp).await
        })
        .await
    }

    /// [`Client::stat`], with the byte range of part `part` (from 1) of a
    /// value composed with its parts kept ([`Stat::part`]; `None` when it
    /// has no such part, [`Stat::parts`] says how many it has).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// let stat = client.stat_part("/b/big", 2).await?;
    /// if let Some(range) = &stat.part {
    ///     println!("part 2 of {:?}: bytes {range:?}", stat.parts);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stat_part(&self, raw_key: &str, part: u32) -> Result<Stat> {
        let k = &key(raw_key)?;
        self.call(&k.url_path(), |url, _| async move {
            let resp = self
                .send_small(Method::HEAD, &url, |r| r.header(TROVE_PART, part))
                .await?;
            redirect(k.as_str(), &url, resp).await
        })
        .await
    }

    /// Whether the key exists (a [`Client::stat`] that maps `NotFound` to
    /// `false`).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// if !client.exists("/photos/cat.jpg").await? {
    ///     client.put_bytes("/photos/cat.jpg", "meow".into(), &Default::default()).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn exists(&self, raw_key: &str) -> Result<bool> {
        match self.stat(raw_key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}
