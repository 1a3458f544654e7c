//! `DELETE /key` and `UNLINK /key`.
//!
//! Both are retried like every master call. A retry after a connection that
//! broke once the request was sent may find the key already gone: that
//! `404` is the earlier attempt's success, not an error.

use crate::client::{key, status_error, Client};
use crate::error::{Error, Result};
use reqwest::{Method, StatusCode};

impl Client {
    /// Deletes a key everywhere (`204`). [`Error::NotFound`] when absent;
    /// [`Error::Forbidden`] for a live key on a `--protect` master (unlink
    /// it first).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// client.delete("/tmp/scratch.bin").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, raw_key: &str) -> Result<()> {
        self.remove(raw_key, Method::DELETE).await
    }

    /// Soft-deletes a key: it reads as absent at once and its bytes stay on
    /// the volumes until [`Client::delete`].
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// client.unlink("/photos/old.jpg").await?;
    /// client.delete("/photos/old.jpg").await?; // frees the bytes
    /// # Ok(()) }
    /// ```
    pub async fn unlink(&self, raw_key: &str) -> Result<()> {
        let method = Method::from_bytes(b"UNLINK").expect("a valid method name");
        self.remove(raw_key, method).await
    }

    async fn remove(&self, raw_key: &str, method: Method) -> Result<()> {
        let k = &key(raw_key)?;
        let method = &method;
        self.call(&k.url_path(), |url, earlier| async move {
            let resp = self.send_small(method.clone(), &url, |r| r).await?;
            match resp.status() {
                StatusCode::NO_CONTENT => Ok(()),
                StatusCode::NOT_FOUND if earlier => Ok(()),
                _ => Err(status_error(k.as_str(), &url, resp).await),
            }
        })
        .await
        .map_err(|e| match e {
            // A 403 on DELETE is --protect, never "exists".
            Error::Exists { key } => Error::Forbidden {
                key,
                message: "refused".into(),
            },
            e => e,
        })
    }
}
