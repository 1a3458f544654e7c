//! Keys with a TTL: the write headers that set an expiry, and the expirer
//! that deletes expired keys.
//!
//! A write may carry `Trove-Expires-After` (a duration) or
//! `Trove-Expires-At` (a time); without either, the master's
//! `--default-ttl` applies. The expiry time is stored in the record, and
//! the key reads as absent from that moment (`get`, listings, `UNLINK`).
//!
//! The expirer is a background task that asks the index for the entries
//! that are due (the index keeps them ordered by time, so it never reads a
//! key that is not due) and deletes each key — replicas first, then the
//! record — at most `--expiry-rate` keys a second, under the key's lock and
//! after re-reading its record, as the admin jobs do. A key whose replica
//! cannot be deleted now (a volume down) stays for the next pass; the
//! entries live in the index, so a restart picks up where it stopped.

use crate::error::ApiError;
use crate::AppState;
use axum::http::HeaderMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use trove_common::flags::parse_duration;
use trove_common::http::{TROVE_EXPIRES_AFTER, TROVE_EXPIRES_AT};
use trove_common::key::Key;
use trove_common::record::{now_ms, State};

/// Expiry entries fetched per pass.
const BATCH: usize = 1000;

/// What the expirer has done since the master started.
#[derive(Debug, Default)]
pub struct ExpiryStats {
    /// Keys deleted because they expired.
    pub expired: AtomicU64,
    /// Expired keys whose deletion failed (they are retried).
    pub failed: AtomicU64,
}

/// When a write asks its key to expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// This long after the value is committed (`Trove-Expires-After`,
    /// `--default-ttl`): a slow upload does not eat into its TTL.
    After(Duration),
    /// At this time, Unix ms (`Trove-Expires-At`).
    At(u64),
}

impl Expiry {
    /// The expiry time of a value committed at `created_ms`; an error when
    /// that time has passed already (a `Trove-Expires-At` that came while
    /// the value was on its way), as it would have been on arrival.
    pub fn at(self, created_ms: u64) -> Result<u64, ApiError> {
        match self {
            Expiry::After(ttl) => Ok(created_ms.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64)),
            Expiry::At(ms) if ms > created_ms => Ok(ms),
            Expiry::At(_) => Err(ApiError::BadRequest(format!(
                "the {TROVE_EXPIRES_AT} time passed while the value was being written; nothing was stored"
            ))),
        }
    }
}

/// The expiry a write asks for, or `default_ttl`; a time must be later
/// than `now_ms`.
pub fn requested(
    headers: &HeaderMap,
    default_ttl: Option<Duration>,
    now_ms: u64,
) -> Result<Option<Expiry>, ApiError> {
    let header = |name: &str| -> Result<Option<&str>, ApiError> {
        trove_common::http::single(headers, name, name)
            .map(|v| v.map(str::trim))
            .map_err(ApiError::BadRequest)
    };
    match (header(TROVE_EXPIRES_AFTER)?, header(TROVE_EXPIRES_AT)?) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(format!(
            "send {TROVE_EXPIRES_AFTER} or {TROVE_EXPIRES_AT}, not both"
        ))),
        (Some("never"), None) => Ok(None),
        (Some(after), None) => {
            let ttl = parse_duration(after)
                .map_err(|e| ApiError::BadRequest(format!("{TROVE_EXPIRES_AFTER}: {e} (or `never`)")))?;
            if ttl.is_zero() {
                return Err(ApiError::BadRequest(format!(
                    "{TROVE_EXPIRES_AFTER} must be more than 0"
                )));
            }
            Ok(Some(Expiry::After(ttl)))
        }
        (None, Some(at)) => {
            let too_far =
                || ApiError::BadRequest(format!("{TROVE_EXPIRES_AT} `{at}` is too far in the future"));
            let time = match at.parse::<u64>() {
                Ok(secs) => UNIX_EPOCH
                    .checked_add(Duration::from_secs(secs))
                    .ok_or_else(too_far)?,
                Err(_) => httpdate::parse_http_date(at).map_err(|_| {
                    ApiError::BadRequest(format!(
                        "{TROVE_EXPIRES_AT} must be Unix seconds or an HTTP date, not `{at}`"
                    ))
                })?,
            };
            let ms = u64::try_from(time.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis())
                .map_err(|_| too_far())?;
            if ms <= now_ms {
                return Err(ApiError::BadRequest(format!(
                    "{TROVE_EXPIRES_AT} `{at}` is not in the future"
                )));
            }
            Ok(Some(Expiry::At(ms)))
        }
        (None, None) => Ok(default_ttl.map(Expiry::After)),
    }
}

/// Deletes expired keys until the task is dropped: every `interval`, the
/// entries due are handled one at a time, at most `rate` a second.
pub async fn run(state: Arc<AppState>) {
    let interval = state.config.expiry_interval;
    let pause = Duration::from_secs_f64(1.0 / f64::from(state.config.expiry_rate.max(1)));
    // Where the next batch starts: after the last entry of a full batch,
    // so that a batch of keys that cannot be deleted now (a volume down)
    // does not hide the keys behind it; from the start again once a pass
    // has reached the last due entry.
    let mut after = None;
    loop {
        let due = match state.index.due_after(now_ms(), BATCH, after.take()).await {
            Ok(due) => due.entries,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the expiry index");
                vec![]
            }
        };
        for (expires, key) in &due {
            expire(&state, key, *expires).await;
            tokio::time::sleep(pause).await;
        }
        // A full batch: more may be due at once. Otherwise (nothing more
        // due, or only keys that cannot be deleted now) wait.
        if due.len() == BATCH {
            after = due.last().cloned();
        } else {
            tokio::time::sleep(interval).await;
        }
    }
}

/// Deletes one expired key, or drops its entry if stale; what cannot be
/// done now is left for a later pass.
async fn expire(state: &AppState, raw_key: &str, expires: u64) {
    let stale = || async {
        if let Err(e) = state.index.forget_expiry(raw_key, expires).await {
            tracing::error!(key = %raw_key, error = %e, "cannot drop a stale expiry entry");
        }
    };
    let Ok(key) = Key::new(raw_key) else {
        return stale().await;
    };
    // A key being written or deleted is left for the next pass.
    let Some(_guard) = state.locks.try_lock(&key) else {
        return;
    };
    let record = match state.index.get(&key) {
        Ok(Some(r)) if r.expires == Some(expires) && r.state != State::Writing => r,
        Ok(_) => return stale().await,
        Err(e) => {
            tracing::error!(key = %key, error = %e, "cannot read an expiring key's record");
            return;
        }
    };
    if let Err((addr, e)) = crate::delete::remove_replicas(state, &key, &record.volumes).await {
        state.expiry.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(key = %key, volume = %addr, error = %e, "cannot delete an expired replica; retrying later");
        return;
    }
    if let Err(e) = state
        .index
        .remove_expired(&key, expires, record.counted_state())
        .await
    {
        tracing::error!(key = %key, error = %e, "cannot remove an expired record");
        return;
    }
    state.expiry.expired.fetch_add(1, Ordering::Relaxed);
    tracing::info!(key = %key, "expired");
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn write_headers_set_the_expiry() {
        let now = 1_700_000_000_000;
        let hour = Some(Duration::from_secs(3600));
        // The expiry of a value committed at once.
        let req = |pairs: &[(&'static str, &str)], default| {
            requested(&headers(pairs), default, now).map(|e| e.map(|e| e.at(now).unwrap()))
        };
        assert_eq!(req(&[], None).unwrap(), None);
        assert_eq!(req(&[], hour).unwrap(), Some(now + 3_600_000), "--default-ttl");
        assert_eq!(
            req(&[(TROVE_EXPIRES_AFTER, "3600")], None).unwrap(),
            Some(now + 3_600_000)
        );
        assert_eq!(
            req(&[(TROVE_EXPIRES_AFTER, "90s")], hour).unwrap(),
            Some(now + 90_000)
        );
        assert_eq!(req(&[(TROVE_EXPIRES_AFTER, "never")], hour).unwrap(), None);
        assert_eq!(
            req(&[(TROVE_EXPIRES_AT, "1700000600")], None).unwrap(),
            Some(1_700_000_600_000)
        );
        assert_eq!(
            req(&[(TROVE_EXPIRES_AT, "Tue, 14 Nov 2023 22:23:20 GMT")], None).unwrap(),
            Some(1_700_000_600_000)
        );
        for bad in [
            &[(TROVE_EXPIRES_AFTER, "soon")][..],
            &[(TROVE_EXPIRES_AFTER, "0")],
            &[(TROVE_EXPIRES_AFTER, "-5")],
            &[(TROVE_EXPIRES_AT, "1600000000")],
            &[(TROVE_EXPIRES_AT, "tomorrow")],
            &[(TROVE_EXPIRES_AFTER, "1h"), (TROVE_EXPIRES_AT, "1800000000")],
            // Past what a clock can hold: refused, never a panic.
            &[(TROVE_EXPIRES_AT, "18446744073709551615")],
            &[(TROVE_EXPIRES_AT, "100000000000000000")],
            &[(TROVE_EXPIRES_AFTER, "100000000000000000000")],
        ] {
            assert!(matches!(req(bad, None), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
        // A TTL counts from the commit; a time must not have passed by then.
        let ttl = requested(&headers(&[(TROVE_EXPIRES_AFTER, "2")]), None, now)
            .unwrap()
            .unwrap();
        assert_eq!(ttl.at(now + 60_000).unwrap(), now + 62_000);
        let at = requested(&headers(&[(TROVE_EXPIRES_AT, "1700000002")]), None, now)
            .unwrap()
            .unwrap();
        assert_eq!(at.at(now + 1_000).unwrap(), now + 2_000);
        assert!(matches!(at.at(now + 2_000), Err(ApiError::BadRequest(_))));
    }
}
