//! `GET /prefix?list`: keys under a prefix, one page at a time or as a
//! stream over every page.

use crate::client::{status_error, Client};
use crate::error::{Error, Result};
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use trove_common::key::encode_query_value;

/// Keys asked for per page by [`Client::list`].
pub const PAGE_SIZE: usize = 1000;

/// Which keys a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Unlinked keys instead of live ones.
    pub unlinked: bool,
    /// First key to return (inclusive).
    pub start: Option<String>,
    /// Keys per page (default [`PAGE_SIZE`]); `Some(0)` is a valid empty
    /// page.
    pub page_size: Option<usize>,
    /// Roll keys that contain this after the prefix up into their common
    /// prefix (S3's delimiter); each prefix counts as one entry of a page.
    pub delimiter: Option<String>,
    /// Start after this key (exclusive: S3's marker / start-after). Not
    /// together with `start`.
    pub after: Option<String>,
    /// Ask for each key's size, digests and dates ([`Page::objects`]).
    pub detail: bool,
}

/// One key of a detailed listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ObjectInfo {
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Hex md5.
    #[serde(default)]
    pub md5: String,
    /// The ETag, unquoted (the md5 unless the writer gave another).
    #[serde(default)]
    pub etag: String,
    /// When it was written, Unix ms.
    #[serde(default)]
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// When it expires, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Page {
    /// Keys in bytewise order.
    pub keys: Vec<String>,
    /// The first key not returned (pass it as the next `start`); `None`
    /// on the last page.
    #[serde(deserialize_with = "empty_is_none")]
    pub next: Option<String>,
    /// Common prefixes (listings with a delimiter), bytewise order.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// One entry per key (listings with `detail`).
    #[serde(default)]
    pub objects: Vec<ObjectInfo>,
}

fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    Ok((!s.is_empty()).then_some(s))
}

impl Client {
    /// One page of keys under `prefix` (`/` for all).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// let page = client.list_page("/photos/", &Default::default()).await?;
    /// for key in &page.keys { println!("{key}"); }
    /// if let Some(next) = page.next { println!("more from {next}"); }
    /// # Ok(()) }
    /// ```
    pub async fn list_page(&self, prefix: &str, opts: &ListOptions) -> Result<Page> {
        if !prefix.starts_with('/') {
            return Err(Error::Config(format!("`{prefix}`: a prefix starts with '/'")));
        }
        // The prefix goes in the query, not as the path: URL parsers
        // collapse a path's `.` and `..` segments, so `/dir/.` (the
        // dotfiles of `/dir/`) would list all of `/dir/`.
        let mut query = format!(
            "/?{}&prefix={}&limit={}",
            if opts.unlinked { "unlinked" } else { "list" },
            encode_query_value(prefix),
            opts.page_size.unwrap_or(PAGE_SIZE)
        );
        if opts.start.is_some() && opts.after.is_some() {
            return Err(Error::Config(
                "a listing takes `start` or `after`, not both".into(),
            ));
        }
        if let Some(start) = &opts.start {
            query.push_str("&start=");
            query.push_str(&encode_query_value(start));
        }
        if let Some(after) = &opts.after {
            query.push_str("&after=");
            query.push_str(&encode_query_value(after));
        }
        if let Some(delimiter) = &opts.delimiter {
            query.push_str("&delimiter=");
            query.push_str(&encode_query_value(delimiter));
        }
        if opts.detail {
            query.push_str("&detail");
        }
        self.call(&query, |url, _| async move {
            let resp = self.send_small(Method::GET, &url, |r| r).await?;
            if resp.status() != StatusCode::OK {
                return Err(status_error(prefix, &url, resp).await);
            }
            resp.json::<Page>().await.map_err(|e| Error::Protocol {
                url: url.clone(),
                message: format!("not a listing: {e}"),
            })
        })
        .await
    }

    /// Every key under `prefix`, page after page, as a stream (one page in
    /// memory at a time).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// use futures::TryStreamExt;
    /// let keys: Vec<String> = client.list("/photos/", Default::default()).try_collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn list(&self, prefix: &str, opts: ListOptions) -> BoxStream<'static, Result<String>> {
        self.pages(prefix, opts)
            .flat_map(|page| each(page.map(|p| p.keys)))
            .boxed()
    }

    /// Every key under `prefix` with its size, digests and dates (a
    /// `detail` listing), page after page, as a stream. Unlike
    /// [`Client::stat`], this also describes unlinked keys
    /// (`opts.unlinked`), which a `HEAD` answers as absent.
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// use futures::TryStreamExt;
    /// let opts = trove_client::ListOptions { unlinked: true, ..Default::default() };
    /// let mut objects = client.list_objects("/", opts);
    /// while let Some(o) = objects.try_next().await? {
    ///     println!("{} bytes  {}", o.size, o.key);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list_objects(&self, prefix: &str, opts: ListOptions) -> BoxStream<'static, Result<ObjectInfo>> {
        let opts = ListOptions { detail: true, ..opts };
        let url = self.master_url("/");
        self.pages(prefix, opts)
            .flat_map(move |page| {
                each(page.and_then(|page| {
                    // A master from before `detail` answers the keys alone.
                    if page.objects.len() != page.keys.len() {
                        return Err(Error::Protocol {
                            url: url.clone(),
                            message: format!(
                                "a detail listing of {} keys described {}: the master is too old for `detail`",
                                page.keys.len(),
                                page.objects.len()
                            ),
                        });
                    }
                    Ok(page.objects)
                }))
            })
            .boxed()
    }

    /// Every page of a listing, each asked for once the one before was
    /// taken; the stream ends after the last page or the first error.
    fn pages(&self, prefix: &str, opts: ListOptions) -> BoxStream<'static, Result<Page>> {
        struct State {
            client: Client,
            prefix: String,
            opts: ListOptions,
            done: bool,
        }
        let state = State {
            client: self.clone(),
            prefix: prefix.to_string(),
            opts,
            done: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            let page = s.client.list_page(&s.prefix, &s.opts).await;
            match &page {
                Ok(page) => {
                    s.done = page.next.is_none();
                    s.opts.start = page.next.clone();
                    s.opts.after = None;
                }
                Err(_) => s.done = true,
            }
            Some((page, s))
        })
        .boxed()
    }
}

/// A page's entries one by one, or its error as the one item.
fn each<T>(page: Result<Vec<T>>) -> futures::stream::Iter<std::vec::IntoIter<Result<T>>> {
    let items = match page {
        Ok(entries) => entries.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e)],
    };
    futures::stream::iter(items)
}
