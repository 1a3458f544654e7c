//! `GET`/`HEAD /<key>[?write=W]`: the blob's bytes, whole or one range
//! (honouring `If-Range`), streamed straight from a memory map of the file,
//! each block checked against the CRC32C stored with it before it is sent
//! (see `store::blocks`), with the value's stored metadata headers
//! (`Content-Type`, …, `x-amz-meta-*`) and its `ETag`.
//!
//! With `?write=W` (the master's redirects pin the write; `?sha256=H` for
//! a value stored before writes had ids) the answer is that copy — the
//! blob in place, or the previous value kept aside while a replace is
//! unconfirmed — or `404` [`trove_common::http::REPLACED_MESSAGE`].
//!
//! On a connection that can (Linux), the checked bytes go out with
//! `sendfile`: the body yields marker chunks that name a range of the
//! file, and the socket sends that range from the page cache (see
//! `trove_common::server::zerocopy`). The check is the same either way:
//! each block is read through the memory map and its CRC32C compared
//! before its marker is yielded, so no byte of a block that failed is
//! ever sent.
//!
//! A block that does not match is never sent: if it is the first, the
//! answer is `503` (like any damaged copy); later, the response is cut
//! off — a reader sees a short body, never wrong bytes. Either way the
//! copy is marked damaged, so it is not served again and `verify` reports
//! and repairs it.

use crate::error::{disk_error, ApiError};
use crate::store::blocks::{self, BLOCK};
use crate::store::{BlobStore, DiskCalls, OpenBlob, Pin, ReadKind, StoreError};
use crate::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trove_common::conditions::{Current, Preconditions, ReadVerdict};
use trove_common::http::{
    meta_headers, quoted_etag, valid_write_id, KEY_STATE, KEY_WRITE, SHA256_PARAM, WRITE_PARAM,
};
use trove_common::key::Key;
use trove_common::range::{if_range_matches, ByteRange, RangeError};
use trove_common::record::{BlobMeta, ETAG_META};
use trove_common::server::zerocopy::{self, ZeroCopy};

// A checked block goes out as one marker chunk (or less, for a range).
const _: () = assert!(BLOCK as usize <= zerocopy::MAX_CHUNK);

/// The copy a read is pinned to (`write=` or `sha256=` in the query), if any.
pub fn pinned(query: Option<&str>) -> Result<Option<Pin>, ApiError> {
    let Some(query) = query else {
        return Ok(None);
    };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Write ids are letters, digits and `-`, a sha256 hex digits:
        // nothing to percent-decode.
        if name == WRITE_PARAM {
            if !valid_write_id(value) {
                return Err(ApiError::BadRequest(
                    "write must be 1-64 letters, digits or -".into(),
                ));
            }
            return Ok(Some(Pin::Write(value.to_string())));
        }
        if name == SHA256_PARAM {
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::BadRequest("sha256 must be 64 hex digits".into()));
            }
            return Ok(Some(Pin::Sha256(value.to_string())));
        }
    }
    Ok(None)
}

/// The ETag a volume answers for a copy (unquoted): the value's own (the
/// one given at write time, else the md5 the master confirmed), or — for
/// a copy whose md5 the volume has not learnt yet — its sha256.
fn etag_of(meta: &BlobMeta) -> &str {
    meta.meta
        .get(ETAG_META)
        .map(String::as_str)
        .filter(|e| !e.is_empty())
        .unwrap_or(if !meta.md5.is_empty() {
            &meta.md5
        } else if !meta.sha256.is_empty() {
            &meta.sha256
        } else {
            // Unconfirmed, and checked by CRC32C: the block checksums.
            meta.crc32c.as_deref().unwrap_or_default()
        })
}

/// What every answer about a copy says of it (a `200`, a `206`, a `304`):
/// its ETag, `Last-Modified`, state, digests, write and stored metadata.
fn described(meta: &BlobMeta, etag: &str, last_modified: SystemTime) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&quoted_etag(etag)).expect("an ETag is visible ASCII"),
    );
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&httpdate::fmt_http_date(last_modified)).expect("an HTTP date is ASCII"),
    );
    h.insert(KEY_STATE, HeaderValue::from_static(meta.state.as_str()));
    super::put::digest_headers(&mut h, meta);
    if let Some(write) = meta.write.as_deref().and_then(|w| HeaderValue::from_str(w).ok()) {
        h.insert(KEY_WRITE, write);
    }
    for (name, value) in meta_headers(&meta.meta) {
        if name != ETAG_META {
            h.insert(name, value);
        }
    }
    h
}

pub async fn get(
    state: &AppState,
    key: Key,
    pin: Option<Pin>,
    headers: &HeaderMap,
    head_only: bool,
    zero_copy: Option<ZeroCopy>,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let k = key.clone();
    let pinned = pin.is_some();
    // Finding the blob reads its metadata from the disk (unless cached):
    // one of the disk reads of the key's home dir, where it is looked
    // for first, so that a hung disk holds a bounded number of threads
    // and is seen (`stalled_ms`).
    let disk = store.home_disk(&key);
    let (opened, lost) = disk
        .read(ReadKind::Open, state.config.timeouts.stall, move || match pin {
            Some(pin) => {
                let opened = store.open_pinned(&k, &pin);
                // A reader the master sent here for a write of which this
                // volume holds no copy at all — not a newer one either,
                // which is a replace after the redirect —: lost (a file
                // deleted, a disk emptied under the volume), or deleted
                // after the redirect (the master then finds no record).
                let lost = matches!(opened, Err(StoreError::Replaced | StoreError::NotFound))
                    && !store.holds_any_copy(&k);
                (opened, lost)
            }
            None => (store.open_blob(&k), false),
        })
        .await
        .map_err(disk_error)?;
    // Reported for the master to repair; a `HEAD` is a check, not a reader.
    if !head_only && (lost || matches!(opened, Err(StoreError::Corrupt(_)))) {
        state.store.damage().report(&key);
    }
    let blob = opened?;
    if blob.meta.damaged {
        // Reported again: the report made when the damage was found may
        // have been lost with a restart, and the master still sends
        // readers here. (A `HEAD` is a check, not a reader.)
        if !head_only {
            state.store.damage().report(&key);
        }
        return Err(ApiError::Damaged);
    }
    let len = blob.meta.size;
    let etag = etag_of(&blob.meta);
    let last_modified = UNIX_EPOCH + Duration::from_millis(blob.meta.created);
    let described = described(&blob.meta, etag, last_modified);
    // The client's conditions (RFC 9110 §13.2.2), before any range.
    let conditions = Preconditions::from_headers(headers).map_err(ApiError::BadRequest)?;
    match conditions.check_read(Current::new(etag, blob.meta.created)) {
        ReadVerdict::Serve => {}
        ReadVerdict::NotModified => {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            resp.headers_mut().extend(described);
            return Ok(resp);
        }
        ReadVerdict::Failed(failed) if !pinned => return Err(failed.into()),
        // A redirect's read: the master checked these against the value's
        // record before redirecting, and this copy's ETag (a sha256 until
        // the copy is confirmed) or time (this volume's clock) may differ.
        ReadVerdict::Failed(_) => {}
    }

    // A range of a value the client no longer has (its `If-Range` names
    // another version) would splice new bytes onto old ones: it gets the
    // whole current value instead. An `If-Range` that is not text matches
    // nothing.
    let same_version = headers.get(header::IF_RANGE).is_none_or(|v| {
        v.to_str()
            .is_ok_and(|v| if_range_matches(v, &quoted_etag(etag), last_modified))
    });
    let range = match headers
        .get(header::RANGE)
        .filter(|_| same_version)
        .map(|v| v.to_str().map(ByteRange::parse))
    {
        None | Some(Err(_)) | Some(Ok(Err(RangeError::Malformed))) => None,
        Some(Ok(Err(e @ RangeError::Multiple))) => return Err(ApiError::Unsatisfiable(e.to_string())),
        Some(Ok(Ok(r))) => Some(r),
    };
    let (status, span) = match range {
        None => (StatusCode::OK, 0..len),
        Some(r) => match r.resolve(len) {
            Ok(span) => (StatusCode::PARTIAL_CONTENT, span),
            Err(e) => {
                return Ok(Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                    .body(Body::from(format!("{e}\n")))
                    .expect("valid response"))
            }
        },
    };

    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, span.end - span.start)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(h) = resp.headers_mut() {
        // The stored Content-Type, if any, replaces the default.
        h.extend(described);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{len}", span.start, span.end - 1)).expect("ascii"),
        );
    }
    let body = if head_only {
        Body::empty()
    } else {
        checked_body(
            Arc::clone(&state.store),
            key,
            blob,
            span,
            zero_copy,
            state.config.timeouts.stall,
        )
        .await?
    };
    Ok(resp.body(body).expect("valid response"))
}

/// The bytes of `span` as a stream of slices of one memory map, one block
/// at a time, each checked before it goes out. The first block is checked
/// here, before the answer starts, so a damaged small value gets a clean
/// `503`. With `zero_copy`, each checked piece goes out as a marker chunk
/// (`sendfile` of the same range of the file) instead of the mapped bytes.
///
/// Reading a block through the map may wait on the disk, so a block whose
/// pages are not all in memory is read on the blocking pool (see
/// [`read_block`]): a hung disk holds up its own readers, never the
/// threads that serve every other request and `/-/healthy`.
async fn checked_body(
    store: Arc<BlobStore>,
    key: Key,
    blob: OpenBlob,
    span: Range<u64>,
    zero_copy: Option<ZeroCopy>,
    wait: Duration,
) -> Result<Body, ApiError> {
    if span.is_empty() {
        return Ok(Body::empty());
    }
    let size = blob.meta.size;
    // No checksums: a blob stored before volumes kept them, served as it
    // is. Checksums that do not parse: a damaged sidecar, never "unchecked".
    let sums: Option<Arc<[u32]>> = match blob.meta.crc32c.as_deref() {
        None => None,
        Some(s) => match blocks::parse(s, size) {
            Some(sums) => Some(sums.into()),
            None => {
                report_damage(&store, &key, &blob.meta, 0);
                return Err(ApiError::Damaged);
            }
        },
    };
    // Map whole blocks, so each can be checked.
    let first = span.start / BLOCK;
    let mapped = first * BLOCK..(span.end.div_ceil(BLOCK) * BLOCK).min(size);
    let map = map_file(&blob, mapped.clone())?;
    let block_count = (mapped.end - mapped.start).div_ceil(BLOCK) as usize;
    let disk = store.disk_calls(blob.dir);
    // Block `i` of the mapping: whether it passed its check, and the
    // wanted part of it (its place in the file, and the mapped bytes).
    let piece = move |i: usize| {
        let at = i as u64 * BLOCK;
        let block = map.slice(at as usize..((at + BLOCK).min(map.len() as u64)) as usize);
        let (from, to) = (mapped.start + at, mapped.start + at + block.len() as u64);
        let wanted = span.start.max(from) - from..span.end.min(to) - from;
        let (sums, disk) = (sums.clone(), Arc::clone(&disk));
        async move {
            let ok = read_block(sums, first as usize + i, block.clone(), disk, wait).await;
            let bytes = block.slice(wanted.start as usize..wanted.end as usize);
            ok.map(|ok| (ok, from + wanted.start, bytes))
        }
    };
    let (ok, head_at, head) = piece(0).await.map_err(disk_error)?;
    if !ok {
        report_damage(&store, &key, &blob.meta, first);
        return Err(ApiError::Damaged);
    }
    let OpenBlob { file, meta, .. } = blob;
    let rest = futures::stream::iter(1..block_count)
        .then(piece)
        .enumerate()
        .map(move |(n, checked)| match checked? {
            (true, at, bytes) => Ok((at, bytes)),
            (false, _, _) => {
                report_damage(&store, &key, &meta, first + 1 + n as u64);
                Err(std::io::Error::other(
                    "stored bytes fail their checksum; response cut",
                ))
            }
        });
    // A failed block ends the stream: nothing after it is sent.
    let checked = futures::stream::once(std::future::ready(Ok((head_at, head))))
        .chain(rest)
        .scan(false, |failed, item| {
            let next = (!*failed).then_some(item);
            *failed = next.as_ref().is_some_and(Result::is_err);
            std::future::ready(next)
        });
    // The marker is registered as the stream yields it (the stream is
    // lazy), never ahead: see `zerocopy` on keep-alive connections.
    let file = Arc::new(file);
    let chunks = checked.map(move |item| {
        item.map(|(at, bytes)| match &zero_copy {
            Some(zc) => zc.file_chunk(&file, at, bytes.len()),
            None => bytes,
        })
    });
    Ok(Body::from_stream(chunks))
}

/// Reads block `index` of a blob through its mapping (`block`) and checks
/// it against its checksum (`true` without checksums). In place when every
/// page is in memory already — the common case, one `mincore` — else on
/// the blocking pool, as one of its data dir's `disk` reads (waiting for a
/// slot at most `wait`: a `TimedOut` error, the disk not answering). Either
/// way the pages are in memory just after, for the `sendfile` that
/// follows (the kernel may still evict them before it runs).
async fn read_block(
    sums: Option<Arc<[u32]>>,
    index: usize,
    block: Bytes,
    disk: Arc<DiskCalls>,
    wait: Duration,
) -> std::io::Result<bool> {
    if resident(&block) {
        return Ok(sums.as_ref().is_none_or(|s| blocks::check(s, index, &block)));
    }
    disk.read(ReadKind::Block, wait, move || {
        match &sums {
            Some(s) => blocks::check(s, index, &block),
            None => {
                // Nothing to check: only bring the pages in, a byte of each.
                std::hint::black_box(block.iter().step_by(page_size()).fold(0u8, |a, b| a ^ b));
                true
            }
        }
    })
    .await
}

/// The size of a memory page.
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads a system setting.
    *PAGE.get_or_init(|| match unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    })
}

/// Whether every page of `mapped` (a page-aligned slice of a memory map,
/// at most a block long) is in memory now, so that reading it does not
/// wait on the disk. `false` when the kernel cannot tell.
fn resident(mapped: &[u8]) -> bool {
    const MIN_PAGE: usize = 4096;
    let mut pages = [0u8; (BLOCK as usize).div_ceil(MIN_PAGE)];
    let page = page_size();
    let count = mapped.len().div_ceil(page);
    if page < MIN_PAGE || count > pages.len() || !(mapped.as_ptr() as usize).is_multiple_of(page) {
        return false;
    }
    // SAFETY: `mapped` is a live mapping, page-aligned (checked), and
    // `pages` has a byte for each of its pages (checked); mincore only
    // writes those bytes.
    let r = unsafe {
        nix::libc::mincore(
            mapped.as_ptr() as *mut nix::libc::c_void,
            mapped.len(),
            pages.as_mut_ptr().cast(),
        )
    };
    r == 0 && pages[..count].iter().all(|p| p & 1 == 1)
}

/// Logs a block that failed its checksum, marks the copy damaged, in the
/// background (a sidecar update is disk work), and reports it to the
/// master, which re-copies it from a good replica.
fn report_damage(store: &Arc<BlobStore>, key: &Key, meta: &trove_common::record::BlobMeta, block: u64) {
    tracing::error!(key = %key, block, sha256 = %meta.sha256, "stored bytes fail their block checksum: not served, copy marked damaged and reported to the master");
    let (store, key, meta) = (Arc::clone(store), key.clone(), meta.clone());
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.mark_damaged(&key, &meta) {
            tracing::error!(key = %key, error = %e, "cannot mark a damaged copy");
        }
        // Once marked, so that the master's check sees the mark.
        store.damage().report(&key);
    });
}

/// `span` of the blob's file as shared bytes over a memory map: no copy
/// into user space, and memory that the kernel can reclaim at any time.
fn map_file(blob: &OpenBlob, span: Range<u64>) -> Result<Bytes, ApiError> {
    let len = (span.end - span.start) as usize;
    // SAFETY: blob files are never modified in place: a replacement is a
    // rename of a new file and a delete is an unlink, and both leave this
    // mapping's inode intact. Only someone truncating the file by hand
    // could make a read fault.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(span.start)
            .len(len)
            .map(&blob.file)
    }
    .map_err(|e| ApiError::Internal(format!("cannot map blob: {e}")))?;
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Bytes::from_owner(map))
}
