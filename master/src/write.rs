//! The write path (DESIGN.md "Write path"): lock the key, choose the
//! replicas, record the key as *writing*, stream the body to every replica
//! at once, and make the key *live* only when every replica stored exactly
//! the bytes that passed through here.
//!
//! The order of the last steps is what `rebuild` relies on: the index
//! commits the live record first, and only then are the replicas marked
//! live. A replica marked live therefore proves that the master committed
//! the write, and `rebuild` revives only keys with such a replica — never
//! a write the master could not have acknowledged. Each write has an id
//! that its uploads, its confirming mark and its clean-up carry, so that
//! cleaning up never touches another write's blob, and a key written
//! again after `UNLINK`, or a live key replaced (`Trove-Replace`), keeps
//! its old value (record, bytes, metadata) until the new one is committed
//! — readers included: until then the key reads as the old value.
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
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use trove_common::conditions::{Current, Preconditions};
use trove_common::crash;
use trove_common::digest::{crc32c_hex, Digests, HashBeside};
use trove_common::key::Key;
use trove_common::record::{now_ms, BlobState, Meta, Record, State};

use crate::client::{Stored, UploadInfo, VolumeError};

/// Chunks queued per replica before the body stops being read.
const REPLICA_QUEUE: usize = 4;

/// What the client asked of the write, besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The body's announced length: its `Content-Length`, or the
    /// `Trove-Length` of a chunked body (sent chunked so that a
    /// `Key-Crc32c` trailer can follow it).
    pub len: Option<u64>,
    /// The raw md5 from `Content-MD5`, to check against what arrives.
    pub content_md5: Option<[u8; 16]>,
    /// When the key expires, from the TTL headers or `--default-ttl`.
    pub expires: Option<crate::expiry::Expiry>,
    /// The sha256 from `Key-Sha256`, likewise.
    pub key_sha256: Option<[u8; 32]>,
    /// The CRC32C the client computed of what it sent (`Key-Crc32c`).
    pub key_crc32c: SentCrc32c,
    /// `Trove-Replace`: a live value may be replaced (else `403`).
    pub replace: bool,
    /// `Trove-Allow-Empty`: an empty value is valid (else `411`).
    pub allow_empty: bool,
    /// `If-Match` / `If-None-Match`: checked under the key's lock (`412`).
    pub preconditions: Preconditions,
    /// The value's metadata, stored with it.
    pub meta: Meta,
    /// The part sizes to record with the value ([`Record::parts`]): a
    /// compose's sources, when it asked to keep them.
    pub parts: Vec<u64>,
}

/// The CRC32C a client computed of the bytes it sent (`Key-Crc32c`),
/// checked like `Content-MD5` before anything is committed. A client that
/// streams a body it cannot read twice knows it only at the end, so it
/// sends it as a trailer of the chunked body.
#[derive(Debug, Clone, Default)]
pub enum SentCrc32c {
    #[default]
    None,
    /// In a request header.
    Header(u32),
    /// In the trailer of a chunked body: `slot` is set once the body has
    /// ended (an error text if the value was malformed or sent twice),
    /// unset if it ended without one — which is an error only if the
    /// request `announced` it (`Trailer: Key-Crc32c`).
    Trailer {
        slot: Arc<std::sync::OnceLock<Result<u32, String>>>,
        announced: bool,
    },
}

/// Where a write's bytes come from. Everything around getting the bytes
/// onto the replicas — the lock, the *writing* record, the checks of the
/// result, the commit, the confirmation and a failure's clean-up — is the
/// same whatever the source.
pub enum Source {
    /// The request's body, streamed through the master to every replica
    /// at once.
    Body(Body),
    /// Ranges of other values, which each replica reads itself
    /// ([`crate::compose`]).
    Compose(trove_common::protocol::ComposePlan),
}

/// Where one write stores its value: every replica gets the same upload.
pub struct Destination<'a> {
    pub key: &'a Key,
    /// The replicas, in placement order.
    pub targets: &'a [String],
    /// What each replica's upload carries besides the bytes: the write id,
    /// the write whose copy it replaces, the metadata.
    pub upload: UploadInfo,
}

/// A write that happened: the key's live record, and the CRC32C of the
/// value's bytes (which the replicas confirmed; the master's `201` carries
/// it so that a client can check its transfer without a second sha256).
pub struct Committed {
    pub record: Record,
    pub crc32c: u32,
}

/// Stores `source` under `key` on every replica, then makes it live.
/// Returns the live record and the value's CRC32C. On any failure nothing
/// becomes visible: what this write stored is undone and the key's
/// previous state restored (absent, unlinked with its bytes, or the live
/// value it was replacing) before the error is answered — or, if a
/// replica does not answer within [`UNDO_BEFORE_ANSWER`], the key is
/// released and a background clean-up finishes the undo ([`undo_failed`]).
///
/// A replace is atomic for readers because the key's settled record stays
/// the old live one until the commit ([`Record::settled`]): reads are
/// redirected to the old write's copies, which each volume keeps aside
/// until this write is confirmed (see the volume's `store::previous`).
pub async fn write(
    state: Arc<AppState>,
    key: Key,
    upload: Upload,
    source: Source,
) -> Result<Committed, ApiError> {
    let guard = state.locks.try_lock(&key).ok_or(ApiError::Busy)?;
    let existing = state.index.get(&key)?;
    let previous = existing.as_ref().map(Record::counted_state);
    // What the key reads as now, and what a failure must restore: the
    // record itself (live, unlinked, or expired — an expired key is absent
    // and may be written again; restored, it still reads as absent and
    // the expirer collects it), or the one a dead write (the master
    // restarted mid-write, or a failed write still being cleaned up) was
    // going to restore.
    let replaces = existing.and_then(|r| match r.state {
        State::Writing => r.replaces.map(|b| *b),
        _ => Some(r),
    });
    let replacing_live = replaces.as_ref().is_some_and(|r| r.visible(now_ms()).is_some());
    let current = replaces
        .as_ref()
        .filter(|_| replacing_live)
        .map(|r| Current::new(r.etag(), r.created));
    upload
        .preconditions
        .check(current)
        .map_err(|failed| ApiError::PreconditionFailed {
            failed,
            outcome: "; nothing was stored",
        })?;
    if replacing_live && !upload.replace {
        return Err(ApiError::Exists {
            conditional: !upload.preconditions.is_empty(),
        });
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
    // Ordered by time (ms, then a random tie-break): a volume refuses an
    // upload older than one it has already seen for the key.
    let write_id = format!("{:012x}{:04x}", now_ms(), rand::random::<u16>());
    let replaced_write = replaces.as_ref().and_then(|r| r.write.clone());
    let old_volumes = replaces
        .as_ref()
        .filter(|_| replacing_live)
        .map(|r| r.volumes.clone())
        .unwrap_or_default();
    let writing = Record::writing(targets.clone(), now_ms(), write_id.clone(), replaces);
    state.index.put(&key, writing.clone(), previous).await?;
    crash::point("write-recorded");

    let dest = Destination {
        key: &key,
        targets: &targets,
        upload: UploadInfo {
            write: write_id.clone(),
            replaces: replaced_write,
            meta: upload.meta.clone(),
        },
    };
    let outcome = async {
        let digests = store_on_replicas(&state, &dest, &upload, source).await?;
        crash::point("write-stored");
        check_result(&upload, &digests)?;
        let created = now_ms();
        let record = Record {
            state: State::Live,
            volumes: targets.clone(),
            size: digests.size,
            sha256: digests.sha256_hex(),
            md5: digests.md5_hex(),
            created,
            expires: upload.expires.map(|e| e.at(created)).transpose()?,
            damaged: vec![],
            write: Some(write_id.clone()),
            replaces: None,
            meta: upload.meta.clone(),
            parts: upload.parts.clone(),
        };
        // The commit point: from here the write has happened.
        state
            .index
            .put(&key, record.clone(), Some(writing.counted_state()))
            .await?;
        Ok((record, digests.crc32c))
    }
    .await;

    let (record, crc32c) = match outcome {
        Ok(committed) => committed,
        Err(e) => {
            undo_failed(state, key, writing, guard).await;
            return Err(e);
        }
    };
    crash::point("write-committed");
    // Only now may the volumes call their copies confirmed (and drop the
    // value this one replaced). Every replica already holds the bytes
    // durably, so a mark that fails does not undo the write: it is sent
    // again in the background (and `verify` confirms what that misses).
    if let Err(e) = state
        .volumes
        .mark_all(&key, &targets, BlobState::Live, Some(&record), Some(&write_id))
        .await
    {
        tracing::warn!(key = %key, error = %e, "a replica did not record the confirmation; trying again");
        tokio::spawn(crate::marks::mark_later(
            Arc::clone(&state),
            key.clone(),
            record.clone(),
            BlobState::Live,
        ));
    }
    crash::point("write-confirmed");
    retire_old_copies(&state, &key, &old_volumes, &targets).await;
    Ok(Committed { record, crc32c })
}

/// Gets the value onto every replica of `dest` from `source`, and returns
/// its digests once every replica has confirmed the same bytes (size and a
/// checksum: the CRC32C of the bytes forwarded, or a composed value's
/// sha256). Each replica stores it as a *pending* blob of this write.
async fn store_on_replicas(
    state: &AppState,
    dest: &Destination<'_>,
    upload: &Upload,
    source: Source,
) -> Result<Digests, ApiError> {
    match source {
        Source::Body(body) => stream_to_replicas(state, dest, upload.len, body).await,
        Source::Compose(plan) => crate::compose::store_on_replicas(state, dest, &plan).await,
    }
}

/// Checks the stored value against what the client asked for and announced.
fn check_result(upload: &Upload, digests: &Digests) -> Result<(), ApiError> {
    if digests.size == 0 && !upload.allow_empty {
        return Err(ApiError::EmptyBody);
    }
    if let Some(sent) = upload.content_md5.filter(|m| Some(*m) != digests.md5) {
        return Err(ApiError::Md5Mismatch {
            sent: hex::encode(sent),
            got: digests.md5_hex(),
        });
    }
    if let Some(sent) = upload.key_sha256.filter(|s| Some(*s) != digests.sha256) {
        return Err(ApiError::Sha256Mismatch {
            sent: hex::encode(sent),
            got: digests.sha256_hex(),
        });
    }
    let sent_crc32c = match &upload.key_crc32c {
        SentCrc32c::None => None,
        SentCrc32c::Header(sent) => Some(*sent),
        SentCrc32c::Trailer { slot, announced } => match slot.get() {
            Some(Ok(sent)) => Some(*sent),
            Some(Err(malformed)) => return Err(ApiError::BadRequest(malformed.clone())),
            None if !announced => None,
            None => {
                return Err(ApiError::BadRequest(
                    "the request announced a Key-Crc32c trailer (Trailer: Key-Crc32c) but its body \
                     ended without one; nothing was stored"
                        .into(),
                ))
            }
        },
    };
    if let Some(sent) = sent_crc32c.filter(|s| *s != digests.crc32c) {
        return Err(ApiError::Crc32cMismatch {
            sent: crc32c_hex(sent),
            got: digests.crc32c_hex(),
        });
    }
    Ok(())
}

/// After a live value was replaced on other volumes than it lived on:
/// deletes its copies on the volumes the new value does not use (best
/// effort; `gc` removes what is left). Left behind, such a copy would be a
/// second live value for `rebuild`. A reader redirected there just before
/// the commit gets the volume's "replaced" `404` and asks again.
async fn retire_old_copies(state: &AppState, key: &Key, old: &[String], targets: &[String]) {
    let client = state.volumes.client();
    let stale = old.iter().filter(|a| !targets.contains(a));
    for addr in stale {
        if let Err(e) = client.delete(addr, key).await {
            state.volumes.note_error(&e);
            tracing::warn!(key = %key, volume = %addr, error = %e, "the replaced value's copy remains; gc will remove it");
        }
    }
}

/// How long a failed write waits for its replicas' aborts before its error
/// is answered; a replica slower than this is left to [`clean_up`].
const UNDO_BEFORE_ANSWER: Duration = Duration::from_secs(1);

/// Undoes a failed write while it still holds the key, so that the client,
/// once answered, finds the key exactly as it was (a retry is never told
/// `409` by a clean-up taking the key back). A replica that does not
/// answer within [`UNDO_BEFORE_ANSWER`] (frozen, unreachable) must not hold
/// the key: then the key is released, so a retry proceeds at once on the
/// healthy volumes, and [`clean_up`] goes on in the background — it
/// touches only this write's blobs, and restores the record only if no
/// newer write has taken the key meanwhile (a newer write inherits what to
/// restore).
async fn undo_failed(state: Arc<AppState>, key: Key, writing: Record, guard: KeyGuard) {
    match timeout(UNDO_BEFORE_ANSWER, undo_on_volumes(&state, &key, &writing)).await {
        Ok(Ok(_)) => {
            if let Err(e) = restore_record(&state, &key, &writing).await {
                tracing::warn!(key = %key, error = %e, "could not restore a failed write's record; gc will");
            }
            drop(guard);
        }
        Ok(Err(_)) | Err(_) => {
            drop(guard);
            tokio::spawn(clean_up(state, key, writing));
        }
    }
}

/// Tries this many times to undo a failed write before leaving it to `gc`.
const UNDO_ATTEMPTS: u32 = 8;

/// How long the clean-up waits for the key's lock to restore its record.
const RESTORE_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The background clean-up of a failed write: undo it on the volumes
/// (retrying with backoff while a replica cannot be reached), then give the
/// key its previous record back. If a newer write holds the key by then,
/// that write inherited what to restore; if the volumes stay unreachable,
/// `gc` finds the *writing* record later.
async fn clean_up(state: Arc<AppState>, key: Key, writing: Record) {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=UNDO_ATTEMPTS {
        match undo_on_volumes(&state, &key, &writing).await {
            Ok(_) => break,
            Err(e) if attempt == UNDO_ATTEMPTS => {
                tracing::warn!(key = %key, error = %e, "could not undo a failed write; gc will");
                return;
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + RESTORE_LOCK_WAIT;
    let guard = loop {
        if let Some(guard) = state.locks.try_lock(&key) {
            break guard;
        }
        if tokio::time::Instant::now() >= deadline {
            return; // a newer write has the key, and inherited `replaces`
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if let Err(e) = restore_record(&state, &key, &writing).await {
        tracing::warn!(key = %key, error = %e, "could not restore a failed write's record; gc will");
    }
    drop(guard);
}

/// Undoes a write that did not commit, from its *writing* record: each
/// replica drops what this write stored and puts back the value it
/// replaced. Another write's blobs are never touched, so this needs no
/// lock. Returns how many blobs were removed and their bytes (where the
/// volume knows). An error (a replica unreachable) leaves the writing
/// record for `gc` to try again.
pub(crate) async fn undo_on_volumes(
    state: &AppState,
    key: &Key,
    writing: &Record,
) -> Result<(u64, u64), ApiError> {
    let client = state.volumes.client();
    let undone = writing.volumes.iter().map(|addr| async move {
        match writing.write.as_deref() {
            Some(write_id) => client.abort(addr, key, write_id).await,
            // A record written before writes had ids: its blobs are the
            // failed write's own (sizes unknown).
            None => client.delete(addr, key).await.map(|found| found.then_some(0)),
        }
    });
    let (mut blobs, mut bytes) = (0, 0);
    for result in futures::future::join_all(undone).await {
        if let Some(size) = result.inspect_err(|e| state.volumes.note_error(e))? {
            blobs += 1;
            bytes += size;
        }
    }
    Ok((blobs, bytes))
}

/// Gives the key back its record from before the write `writing` (the
/// unlinked record it replaced, or none) — if the index still holds that
/// write's record. The caller holds the key's lock.
pub(crate) async fn restore_record(state: &AppState, key: &Key, writing: &Record) -> Result<(), ApiError> {
    let current = state.index.get(key)?;
    if current.as_ref().map(|r| (r.state, r.write.as_deref()))
        != Some((State::Writing, writing.write.as_deref()))
    {
        return Ok(()); // a newer write has the key
    }
    // The key counted as the value it replaced all along: putting that
    // back leaves the counts as they were before the write.
    let counted = Some(writing.counted_state());
    match writing.replaces.as_deref() {
        Some(previous) => state.index.put(key, previous.clone(), counted).await?,
        None => state.index.remove(key, counted).await?,
    }
    Ok(())
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

/// How reading the body and handing it to the replicas ended.
enum Pumped {
    /// The whole body was read and every replica took every chunk.
    Whole,
    /// Replica `i` stopped taking bytes; why is in its upload task.
    ReplicaStopped(usize),
    /// The write failed for this reason (the client, or a replica that
    /// stalled).
    Failed(ApiError),
}

/// Streams the body to every target at once and returns its digests once
/// every replica has confirmed the same bytes.
async fn stream_to_replicas(
    state: &AppState,
    dest: &Destination<'_>,
    len: Option<u64>,
    body: Body,
) -> Result<Digests, ApiError> {
    let (key, targets) = (dest.key, dest.targets);
    let client = state.volumes.client();
    let stall = client.timeouts().stall;
    let mut senders = Vec::with_capacity(targets.len());
    let mut uploads = Uploads(Vec::with_capacity(targets.len()));
    for addr in targets {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(REPLICA_QUEUE);
        senders.push(tx);
        let (client, addr, key, info) = (client.clone(), addr.clone(), key.clone(), dest.upload.clone());
        uploads.0.push(Some(tokio::spawn(async move {
            client.put(&addr, &key, &info, ReceiverStream::new(rx), len).await
        })));
    }

    // md5 and sha256 run on their own threads beside the forwarding.
    let mut hasher = HashBeside::start(len);
    let mut body = body.into_data_stream();
    let mut received = 0u64;
    let pumped: Pumped = 'pump: loop {
        let chunk = match timeout(stall, body.next()).await {
            Err(_) => break Pumped::Failed(ApiError::ClientStalled(stall)),
            Ok(None) => match len {
                // Only a `Trove-Length` can disagree (hyper holds a body
                // to its `Content-Length`).
                Some(announced) if announced != received => {
                    break Pumped::Failed(ApiError::LengthMismatch {
                        announced,
                        got: received.to_string(),
                    })
                }
                _ => break Pumped::Whole,
            },
            Ok(Some(Err(e))) => break Pumped::Failed(ApiError::ClientBody(e.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        received += chunk.len() as u64;
        if let Some(announced) = len.filter(|l| received > *l) {
            break Pumped::Failed(ApiError::LengthMismatch {
                announced,
                got: format!("more than {announced}"),
            });
        }
        hasher.update(&chunk).await;
        for (i, tx) in senders.iter().enumerate() {
            match timeout(stall, tx.send(Ok(chunk.clone()))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'pump Pumped::ReplicaStopped(i),
                Err(_) => {
                    let addr = targets[i].clone();
                    break 'pump Pumped::Failed(VolumeError::Timeout { addr, timeout: stall }.into());
                }
            }
        }
    };
    if let Pumped::Whole = pumped {
        drop(senders); // a clean end of every replica's body
    } else {
        // The replicas' bodies must end in an error, never cleanly (a
        // chunked body that ends cleanly would be stored, truncated): each
        // gets an error, and returning aborts the uploads outright.
        for tx in &senders {
            let _ = tx.try_send(Err(std::io::Error::other("write abandoned")));
        }
        if let Pumped::ReplicaStopped(_) | Pumped::Failed(ApiError::Volume(_)) = &pumped {
            // A replica failed while the client is still sending: read on
            // (up to a limit) so that the client gets our answer, not a reset.
            trove_common::http::drain(&mut body, trove_common::http::DRAIN_LIMIT, stall).await;
        }
    }
    match pumped {
        Pumped::Whole => {}
        Pumped::Failed(e) => {
            if let ApiError::Volume(v) = &e {
                state.volumes.note_error(v);
            }
            return Err(e);
        }
        Pumped::ReplicaStopped(i) => {
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

    let digests = hasher
        .finish()
        .await
        .map_err(|e| ApiError::Internal(format!("hashing failed: {e}")))?;
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
        // The replica holds exactly the bytes hashed here: same length,
        // same CRC32C of the transfer.
        if stored.crc32c != Some(digests.crc32c) || stored.size != digests.size {
            return Err(ApiError::ReplicaMismatch {
                addr: addr.clone(),
                expected: format!("crc32c {} ({} bytes)", digests.crc32c_hex(), digests.size),
                got: format!(
                    "crc32c {} ({} bytes)",
                    stored
                        .crc32c
                        .map(trove_common::digest::crc32c_hex)
                        .unwrap_or_default(),
                    stored.size
                ),
            });
        }
    }
    Ok(digests)
}
