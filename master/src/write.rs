//! The write path (DESIGN.md "Write path"): lock the key, choose the
//! replicas, record the key as *writing*, stream the body to every replica
//! at once, and make the key *live* only when every replica stored exactly
//! the bytes that passed through here.
//!
//! Memory stays bounded whatever the value's size: each replica has a queue
//! of [`REPLICA_QUEUE`] chunks, the chunks are shared (`Bytes` clones are
//! reference counts), and the body is read only as fast as the slowest
//! replica takes it — back-pressure, never buffering.

use crate::error::ApiError;
use crate::locks::KeyGuard;
use crate::AppState;
use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use trove_common::digest::{ContentHasher, Digests};
use trove_common::key::Key;
use trove_common::record::{now_ms, BlobState, Record, State};

use crate::client::{Stored, VolumeError};

/// Chunks queued per replica before the body stops being read.
const REPLICA_QUEUE: usize = 4;

/// What the client announced about its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upload {
    /// `Content-Length`, when the body is not chunked.
    pub len: Option<u64>,
    /// The raw md5 from `Content-MD5`, to check against what arrives.
    pub content_md5: Option<[u8; 16]>,
    /// When the key expires (Unix ms), from the TTL headers or `--default-ttl`.
    pub expires: Option<u64>,
}

/// Stores `body` under `key` on every replica, then makes it live.
/// Returns the live record. On any failure nothing becomes visible, and
/// whatever reached the replicas is removed in the background (still
/// under the key's lock, so a retry cannot race the clean-up).
pub async fn write(state: Arc<AppState>, key: Key, upload: Upload, body: Body) -> Result<Record, ApiError> {
    let guard = state.locks.try_lock(&key).ok_or(ApiError::Busy)?;
    let found = state.index.get(&key)?;
    let previous = found.as_ref().map(|r| r.state);
    // An expired key is absent and may be written again (the expirer leaves
    // a rewritten key alone).
    if found.is_some_and(|r| r.state == State::Live && !r.expired(now_ms())) {
        return Err(ApiError::Exists);
    }
    let placement = state.volumes.placement();
    let targets: Vec<String> = placement
        .choose(key.as_bytes(), |v| state.volumes.can_take(&v.addr, upload.len))
        .into_iter()
        .map(|v| v.addr.clone())
        .collect();
    if targets.len() < placement.replicas() {
        let healthy = state.volumes.healthy_count();
        let needed = placement.replicas();
        return Err(if healthy >= needed {
            ApiError::NotEnoughSpace {
                writable: targets.len(),
                needed,
            }
        } else {
            ApiError::NotEnoughVolumes { healthy, needed }
        });
    }
    state
        .index
        .put(&key, Record::writing(targets.clone(), now_ms()), previous)
        .await?;

    let outcome = async {
        let digests = stream_to_replicas(&state, &key, &targets, upload.len, body).await?;
        if digests.size == 0 {
            return Err(ApiError::EmptyBody);
        }
        if let Some(sent) = upload.content_md5.filter(|m| Some(*m) != digests.md5) {
            return Err(ApiError::Md5Mismatch {
                sent: hex::encode(sent),
                got: digests.md5_hex(),
            });
        }
        // The volumes learn the write is complete (for `rebuild`), then the
        // index makes it visible.
        let md5 = digests.md5_hex();
        state
            .volumes
            .mark_all(&key, &targets, BlobState::Live, Some(&md5))
            .await?;
        let record = Record {
            state: State::Live,
            volumes: targets.clone(),
            size: digests.size,
            sha256: digests.sha256_hex(),
            md5: digests.md5_hex(),
            created: now_ms(),
            expires: upload.expires,
            damaged: vec![],
        };
        state
            .index
            .put(&key, record.clone(), Some(State::Writing))
            .await?;
        Ok(record)
    }
    .await;

    if outcome.is_err() {
        tokio::spawn(clean_up(Arc::clone(&state), key, targets, guard));
    }
    outcome
}

/// Removes a failed write's replicas and its *writing* record, then
/// releases the key. What cannot be removed now (a volume down) is an
/// orphan for `gc`.
async fn clean_up(state: Arc<AppState>, key: Key, targets: Vec<String>, _guard: KeyGuard) {
    let client = state.volumes.client();
    let deletes = targets.iter().map(|addr| client.delete(addr, &key));
    for (addr, result) in targets.iter().zip(futures::future::join_all(deletes).await) {
        if let Err(e) = result {
            tracing::warn!(key = %key, volume = %addr, error = %e, "could not remove a failed write's replica; gc will");
        }
    }
    if let Err(e) = state.index.remove(&key, Some(State::Writing)).await {
        tracing::error!(key = %key, error = %e, "could not remove a failed write's record");
    }
}

/// Upload tasks that are aborted if the write gives up early, which drops
/// their connections so the volumes discard the partial blobs.
struct Uploads(Vec<Option<JoinHandle<Result<Stored, VolumeError>>>>);

impl Drop for Uploads {
    fn drop(&mut self) {
        for handle in self.0.iter().flatten() {
            handle.abort();
        }
    }
}

/// Streams the body to every target at once and returns its digests once
/// every replica has confirmed the same bytes.
async fn stream_to_replicas(
    state: &AppState,
    key: &Key,
    targets: &[String],
    len: Option<u64>,
    body: Body,
) -> Result<Digests, ApiError> {
    let client = state.volumes.client();
    let stall = client.timeouts().stall;
    let mut senders = Vec::with_capacity(targets.len());
    let mut uploads = Uploads(Vec::with_capacity(targets.len()));
    for addr in targets {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(REPLICA_QUEUE);
        senders.push(tx);
        let (client, addr, key) = (client.clone(), addr.clone(), key.clone());
        uploads.0.push(Some(tokio::spawn(async move {
            client.put(&addr, &key, ReceiverStream::new(rx), len).await
        })));
    }

    let mut hasher = ContentHasher::new();
    let mut body = body.into_data_stream();
    // Reads the body and hands each chunk to every replica. `Err(Err(i))`:
    // replica `i` stopped taking bytes (its own error is in its task);
    // `Err(Ok(e))`: the write failed with `e`.
    let pumped: Result<(), Result<ApiError, usize>> = 'pump: loop {
        let chunk = match timeout(stall, body.next()).await {
            Err(_) => break Err(Ok(ApiError::ClientStalled(stall))),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(Ok(ApiError::ClientBody(e.to_string()))),
            Ok(Some(Ok(chunk))) => chunk,
        };
        hasher.update(&chunk);
        for (i, tx) in senders.iter().enumerate() {
            match timeout(stall, tx.send(Ok(chunk.clone()))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'pump Err(Err(i)),
                Err(_) => {
                    let addr = targets[i].clone();
                    break 'pump Err(Ok(VolumeError::Timeout { addr, timeout: stall }.into()));
                }
            }
        }
    };
    if pumped.is_ok() {
        drop(senders); // a clean end of every replica's body
    } else {
        // The replicas' bodies must end in an error, never cleanly (a
        // chunked body that ends cleanly would be stored, truncated): each
        // gets an error, and returning aborts the uploads outright.
        for tx in &senders {
            let _ = tx.try_send(Err(std::io::Error::other("write abandoned")));
        }
        if let Err(Err(_)) | Err(Ok(ApiError::Volume(_))) = &pumped {
            // A replica failed while the client is still sending: read on
            // (up to a limit) so that the client gets our answer, not a reset.
            trove_common::http::drain(&mut body, trove_common::http::DRAIN_LIMIT, stall).await;
        }
    }
    match pumped {
        Ok(()) => {}
        Err(Ok(e)) => {
            if let ApiError::Volume(v) = &e {
                state.volumes.note_error(v);
            }
            return Err(e);
        }
        Err(Err(i)) => {
            let handle = uploads.0[i].take().expect("each upload is awaited once");
            let e = match timeout(stall, handle).await {
                Err(_) => VolumeError::Timeout {
                    addr: targets[i].clone(),
                    timeout: stall,
                },
                Ok(Ok(Err(v))) => v,
                Ok(Ok(Ok(_))) => VolumeError::Protocol {
                    addr: targets[i].clone(),
                    message: "answered before the whole body was sent".into(),
                },
                Ok(Err(e)) => return Err(e.into()),
            };
            state.volumes.note_error(&e);
            return Err(e.into());
        }
    }

    let digests = hasher.finish();
    // After the last byte a volume fsyncs the whole value before answering:
    // allow the stall timeout plus a second per MiB, as for other calls
    // whose work grows with the value.
    let answer_within = client.slow_call_timeout(digests.size);
    for (i, addr) in targets.iter().enumerate() {
        let handle = uploads.0[i].take().expect("each upload is awaited once");
        let stored = match timeout(answer_within, handle).await {
            Err(_) => Err(VolumeError::Timeout {
                addr: addr.clone(),
                timeout: answer_within,
            }),
            Ok(joined) => joined?,
        };
        let stored = stored.inspect_err(|e| state.volumes.note_error(e))?;
        if stored.sha256 != digests.sha256 || stored.size != digests.size {
            return Err(ApiError::ReplicaMismatch {
                addr: addr.clone(),
                expected: format!("{} ({} bytes)", digests.sha256_hex(), digests.size),
                got: format!("{} ({} bytes)", hex::encode(stored.sha256), stored.size),
            });
        }
    }
    Ok(digests)
}
