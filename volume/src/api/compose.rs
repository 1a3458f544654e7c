//! `POST /-/compose?key=K&write=W`, JSON body [`ComposePlan`]: store, as
//! master write `W` of `K`, the concatenation of ranges of other values —
//! the server side of S3's CompleteMultipartUpload, UploadPartCopy and
//! CopyObject. The bytes go volume to volume (or disk to disk), never
//! through the master.
//!
//! Each part is read in order: from this volume's own disk when it holds
//! the pinned value (same sha256 and size), each block checked against its
//! CRC32C as a GET would; otherwise from the value's other volumes over
//! HTTP (as `POST /-/pull` does, see [`super::peer`]), failing over to the
//! next replica at the byte where the last one stopped. A peer must serve
//! the pinned value (its `Key-Sha256`), so a part replaced meanwhile is
//! never mixed in. The concatenation goes through the store's ordinary
//! upload path ([`crate::store::BlobStore::write_stream`]): temp file,
//! block CRCs, sha256, the write id, pending until the master marks it —
//! so verify, rebuild, rebalance and gc treat it like any other blob.
//!
//! Memory stays bounded whatever the size: one block a part is in hand,
//! and a queue of [`PIPE`] chunks lies between the reader and the store.
//! The volume computes the value's md5 on the way (the master, which never
//! sees these bytes, cannot) and answers it in `Key-Md5`.

use super::peer;
use crate::error::ApiError;
use crate::store::blocks::{self, BLOCK};
use crate::store::{DiskCalls, Expected, OpenBlob, ReadKind};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use trove_common::http::{
    meta_from_headers, valid_write_id, KEY_MD5, KEY_SHA256, SHA256_PARAM, TROVE_REPLACES, WRITE_PARAM,
};
use trove_common::key::Key;
use trove_common::protocol::{ComposePart, ComposePlan, ComposeQuery};
use trove_common::record::BlobState;

/// The largest plan accepted: 10,000 parts with long keys and their
/// replicas' addresses.
pub const MAX_PLAN_BYTES: usize = 64 << 20;
/// Chunks in flight between the part reader and the store.
const PIPE: usize = 2;

/// Why a compose could not read its parts.
enum ReadFailure {
    /// The store stopped taking bytes (its own error says why).
    WriterGone,
    /// No copy of a part could be read: the error to answer.
    Failed(ApiError),
}

impl From<ApiError> for ReadFailure {
    fn from(e: ApiError) -> Self {
        ReadFailure::Failed(e)
    }
}

pub async fn compose(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ComposeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = Key::new(&q.key)?;
    if !valid_write_id(&q.write) {
        return Err(ApiError::BadRequest(
            "write must be 1-64 letters, digits or -".into(),
        ));
    }
    // Refused before any part is read, as a PUT is before its body.
    state.store.disk_for_writing(&key)?;
    // What a PUT of the value would carry: the write it replaces, the
    // value's metadata.
    let replaces = super::put::write_header(&headers, TROVE_REPLACES)?;
    let meta = meta_from_headers(&headers).map_err(ApiError::BadRequest)?;
    let raw = axum::body::to_bytes(body, MAX_PLAN_BYTES).await.map_err(|e| {
        ApiError::BadRequest(format!(
            "cannot read the compose plan (at most {MAX_PLAN_BYTES} bytes): {e}"
        ))
    })?;
    let plan: ComposePlan = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::BadRequest(format!("the compose plan is not valid JSON: {e}")))?;
    drop(raw);
    plan.check().map_err(ApiError::BadRequest)?;
    let keys = plan
        .parts
        .iter()
        .map(|p| Key::new(&p.key))
        .collect::<Result<Vec<Key>, _>>()?;

    let expected = Expected {
        len: Some(plan.len()),
        sha256: None,
        hash_sha256: true,
        state: BlobState::Pending,
        md5: None,
        write: Some(q.write.clone()),
        replaces,
        copy_of: None,
        meta,
        created: None,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(PIPE);
    let reader = tokio::spawn(read_parts(Arc::clone(&state), plan, keys, tx));
    // A part whose first copy fails may take a stall period per replica
    // before a chunk moves again: the store waits that long.
    let stall = state.config.timeouts.stall * 4;
    let stored = state
        .store
        .write_stream(&key, ReceiverStream::new(rx), expected, stall)
        .await;
    let (md5, meta) = match (reader.await?, stored) {
        // The reader's own error says more than the store's "cut off".
        (Err(ReadFailure::Failed(e)), _) => return Err(e),
        (_, Err(e)) => return Err(e.into()),
        (Err(ReadFailure::WriterGone), Ok(_)) => {
            return Err(ApiError::Internal(
                "the store finished before every part was read".into(),
            ))
        }
        (Ok(md5), Ok(meta)) => (md5, meta),
    };
    tracing::debug!(key = %key, size = meta.size, write = %q.write, "composed");
    let mut resp = super::put::stored(meta);
    resp.headers_mut()
        .insert(KEY_MD5, HeaderValue::from_str(&hex::encode(md5)).expect("hex"));
    Ok(resp)
}

/// Sends the bytes of every part, in order, to `tx`; returns their md5.
/// A failure also ends the stream with an error, so the store keeps
/// nothing.
async fn read_parts(
    state: Arc<AppState>,
    plan: ComposePlan,
    keys: Vec<Key>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<[u8; 16], ReadFailure> {
    let mut md5 = Md5::new();
    for (part, key) in plan.parts.iter().zip(keys) {
        if let Err(e) = read_part(&state, part, &key, &mut md5, &tx).await {
            if let ReadFailure::Failed(e) = &e {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
            }
            return Err(e);
        }
    }
    Ok(md5.finalize().into())
}

/// One part: from the local copy if it is the pinned value, then from the
/// replicas, each taking over where the last stopped.
async fn read_part(
    state: &Arc<AppState>,
    part: &ComposePart,
    key: &Key,
    md5: &mut Md5,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), ReadFailure> {
    let [start, end] = part.range;
    let mut at = start;
    let mut failures: Vec<String> = vec![];
    if at < end {
        let store = Arc::clone(&state.store);
        let k = key.clone();
        // Opened and read as a GET would: the open holds one of the home
        // dir's slots, and each block read is timed, so that a hung disk
        // is seen (and this part read from a replica when no slot comes).
        let disk = store.home_disk(key);
        let opened = disk.read(ReadKind::Open, state.config.timeouts.stall, move || {
            store.open_blob(&k)
        });
        if let Ok(Ok(blob)) = opened.await {
            if blob.meta.sha256 == part.sha256 && blob.meta.size == part.size && !blob.meta.damaged {
                let (tx, mut hasher) = (tx.clone(), md5.clone());
                let range = at..end;
                let (store, k) = (Arc::clone(&state.store), key.clone());
                let disk = store.disk_calls(blob.dir);
                let local = tokio::task::spawn_blocking(move || {
                    let reached = read_local(&blob, &disk, range, &mut hasher, &tx);
                    if let Err((_, LocalError::Damaged(_))) = &reached {
                        // Never served again, and the master repairs it,
                        // as when a GET finds a bad block.
                        if let Err(e) = store.mark_damaged(&k, &blob.meta) {
                            tracing::error!(key = %k, error = %e, "cannot mark a damaged copy");
                        }
                        store.damage().report(&k);
                    }
                    (reached, hasher)
                })
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
                let (reached, hasher) = local;
                *md5 = hasher;
                match reached {
                    Ok(r) => at = r,
                    Err((_, LocalError::WriterGone)) => return Err(ReadFailure::WriterGone),
                    Err((r, LocalError::Damaged(why))) => {
                        tracing::error!(key = %key, error = %why, "local copy of a compose part is damaged; reading it from a replica");
                        failures.push(format!("this volume: {why}"));
                        at = r;
                    }
                }
            }
        }
    }
    for addr in &part.volumes {
        if at == end {
            break;
        }
        match read_remote(state, part, key, addr, &mut at, md5, tx).await {
            Ok(()) => {}
            Err(ReadFailure::Failed(e)) => failures.push(e.to_string()),
            Err(gone) => return Err(gone),
        }
    }
    if at < end {
        return Err(ReadFailure::Failed(ApiError::Upstream(format!(
            "no copy of {key} (sha256 {}) could be read from byte {at}: {}",
            part.sha256,
            failures.join("; ")
        ))));
    }
    Ok(())
}

enum LocalError {
    WriterGone,
    Damaged(String),
}

/// Reads `range` of a local blob block by block (plain reads, not a
/// memory map, so the pages do not stay in this process's memory), checks
/// each block against its CRC32C, and sends the wanted bytes. Returns how
/// far it got. Blocking.
fn read_local(
    blob: &OpenBlob,
    disk: &Arc<DiskCalls>,
    range: std::ops::Range<u64>,
    md5: &mut Md5,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<u64, (u64, LocalError)> {
    let size = blob.meta.size;
    let sums = match blob.meta.crc32c.as_deref() {
        None => None,
        Some(s) => Some(blocks::parse(s, size).ok_or((
            range.start,
            LocalError::Damaged("its block checksums do not parse".into()),
        ))?),
    };
    let mut at = range.start;
    while at < range.end {
        let index = at / BLOCK;
        let block_start = index * BLOCK;
        let block_end = (block_start + BLOCK).min(size);
        let mut block = vec![0u8; (block_end - block_start) as usize];
        let reading = disk.reading();
        blob.file
            .read_exact_at(&mut block, block_start)
            .map_err(|e| (at, LocalError::Damaged(format!("cannot read it: {e}"))))?;
        drop(reading);
        if let Some(sums) = &sums {
            if !blocks::check(sums, index as usize, &block) {
                return Err((at, LocalError::Damaged(format!("block {index} fails its CRC32C"))));
            }
        }
        let upto = range.end.min(block_end);
        let mut chunk = Bytes::from(block);
        chunk = chunk.slice((at - block_start) as usize..(upto - block_start) as usize);
        md5.update(&chunk);
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Err((at, LocalError::WriterGone));
        }
        at = upto;
    }
    Ok(at)
}

/// Reads `*at..end` of the part from the volume `addr`, advancing `*at`
/// with every chunk sent, so that a replica that fails half-way leaves
/// the rest to the next.
async fn read_remote(
    state: &AppState,
    part: &ComposePart,
    key: &Key,
    addr: &str,
    at: &mut u64,
    md5: &mut Md5,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), ReadFailure> {
    let end = part.range[1];
    // Pinned to the value: by its write id, or by its bytes for a value
    // stored before writes had ids (either way the peer serves the copy
    // kept aside if a newer write has replaced it meanwhile).
    let pin = match part.write.as_deref() {
        Some(w) => (WRITE_PARAM, w),
        None => (SHA256_PARAM, part.sha256.as_str()),
    };
    let range = (*at != 0 || end != part.size).then_some(*at..end);
    let resp = peer::get(state, addr, key, &[pin], range).await?;
    let served = resp.headers().get(KEY_SHA256).and_then(|v| v.to_str().ok());
    if served != Some(part.sha256.as_str()) {
        return Err(ApiError::Upstream(format!(
            "{addr} holds another value of {key} (sha256 {}), not {}",
            served.unwrap_or("unknown"),
            part.sha256
        ))
        .into());
    }
    let stall = state.config.timeouts.stall;
    let mut body = resp.bytes_stream();
    while *at < end {
        let chunk = match tokio::time::timeout(stall, body.next()).await {
            Err(_) => return Err(ApiError::Upstream(format!("{addr} sent nothing for {stall:?}")).into()),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ApiError::Upstream(format!("{addr} broke off: {e}")).into()),
            Ok(Some(Ok(chunk))) => chunk,
        };
        if chunk.len() as u64 > end - *at {
            return Err(ApiError::Upstream(format!("{addr} sent more than the range asked")).into());
        }
        md5.update(&chunk);
        let n = chunk.len() as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            return Err(ReadFailure::WriterGone);
        }
        *at += n;
    }
    if *at < end {
        return Err(ApiError::Upstream(format!("{addr} ended {} bytes short", end - *at)).into());
    }
    Ok(())
}
