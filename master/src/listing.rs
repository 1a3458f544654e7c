//! Reading volumes' listings (`GET /-/listing`: every blob in key order)
//! in step with something else in key order: the other volumes' listings
//! (`rebuild`'s k-way merge) or the index (`verify`'s merge-join).
//!
//! A [`Cursor`] reads one volume's listing ahead in a task of its own —
//! decoding there, so several volumes decode on several cores — and hands
//! its entries over one at a time, checking that keys only grow.

use crate::client::VolumeError;
use anyhow::{bail, Context};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use trove_common::protocol::listing::Listed;

/// Decoded chunks of a listing waiting to be taken, per volume.
const READ_AHEAD: usize = 16;

/// One volume's listing, read ahead: the entry it is on, and the chunks
/// decoded behind it.
pub struct Cursor {
    addr: String,
    rx: mpsc::Receiver<anyhow::Result<Vec<Listed>>>,
    chunk: std::vec::IntoIter<Listed>,
    head: Option<Listed>,
    started: bool,
    /// Entries taken so far.
    count: u64,
}

impl Cursor {
    /// Starts reading `stream`, the listing of `addr`. The cursor is
    /// before its first entry: [`Cursor::pop`] or [`Cursor::seek`] moves.
    pub fn start(addr: String, mut stream: BoxStream<'static, Result<Vec<Listed>, VolumeError>>) -> Cursor {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let name = addr.clone();
        tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                let chunk = chunk.with_context(|| format!("the listing of volume {name} broke off"));
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        Cursor {
            addr,
            rx,
            chunk: Vec::new().into_iter(),
            head: None,
            started: false,
            count: 0,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Entries read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The entry the cursor is on (`None` before the first move, and at
    /// the end).
    pub fn head(&self) -> Option<&Listed> {
        self.head.as_ref()
    }

    /// Moves to the next entry and returns the one it was on. Keys must
    /// arrive in strictly increasing order: anything else is an error
    /// (the callers' merges rely on it).
    pub async fn pop(&mut self) -> anyhow::Result<Option<Listed>> {
        self.started = true;
        let next = loop {
            if let Some(e) = self.chunk.next() {
                break Some(e);
            }
            match self.rx.recv().await {
                Some(chunk) => self.chunk = chunk?.into_iter(),
                None => break None,
            }
        };
        if let (Some(prev), Some(next)) = (&self.head, &next) {
            if next.meta.key.as_bytes() <= prev.meta.key.as_bytes() {
                bail!(
                    "volume {} listed {:?} after {:?}: its listing is not in key order",
                    self.addr,
                    next.meta.key,
                    prev.meta.key
                );
            }
        }
        self.count += u64::from(next.is_some());
        Ok(std::mem::replace(&mut self.head, next))
    }

    /// Moves past every entry before `key` and returns the entry of `key`
    /// if the listing has one. Keys asked for must not decrease.
    pub async fn seek(&mut self, key: &str) -> anyhow::Result<Option<&Listed>> {
        if !self.started {
            self.pop().await?;
        }
        while self
            .head
            .as_ref()
            .is_some_and(|h| h.meta.key.as_bytes() < key.as_bytes())
        {
            self.pop().await?;
        }
        Ok(self.head.as_ref().filter(|h| h.meta.key == key))
    }
}
