//! `GET /prefix?list`: keys under a prefix, one page at a time or as a
//! stream over every page.

use crate::client::{status_error, Client};
use crate::error::{Error, Result};
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use trove_common::key::{encode_path, encode_query_value};

/// Keys asked for per page by [`Client::list`].
pub const PAGE_SIZE: usize = 1000;

/// Which keys a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Unlinked keys instead of live ones.
    pub unlinked: bool,
    /// First key to return (inclusive).
    pub start: Option<String>,
    /// Keys per page (default [`PAGE_SIZE`]).
    pub page_size: Option<usize>,
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
        let mut query = format!(
            "{}?{}&limit={}",
            encode_path(prefix),
            if opts.unlinked { "unlinked" } else { "list" },
            opts.page_size.unwrap_or(PAGE_SIZE)
        );
        if let Some(start) = &opts.start {
            query.push_str("&start=");
            query.push_str(&encode_query_value(start));
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
        struct State {
            client: Client,
            prefix: String,
            opts: ListOptions,
            keys: std::vec::IntoIter<String>,
            done: bool,
        }
        let state = State {
            client: self.clone(),
            prefix: prefix.to_string(),
            opts,
            keys: Vec::new().into_iter(),
            done: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            loop {
                if let Some(k) = s.keys.next() {
                    return Some((Ok(k), s));
                }
                if s.done {
                    return None;
                }
                match s.client.list_page(&s.prefix, &s.opts).await {
                    Ok(page) => {
                        s.done = page.next.is_none();
                        s.opts.start = page.next;
                        s.keys = page.keys.into_iter();
                    }
                    Err(e) => {
                        s.done = true;
                        return Some((Err(e), s));
                    }
                }
            }
        })
        .boxed()
    }
}
