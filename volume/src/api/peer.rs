//! Reading a blob from another volume: what `POST /-/pull` and
//! `POST /-/compose` share. The request is signed like the master's (the
//! cluster shares one secret), connecting and the answer's headers are
//! bounded by the stall timeout, and anything but a success is an
//! [`ApiError::Upstream`] naming the peer.

use crate::error::ApiError;
use crate::AppState;
use std::ops::Range;
use trove_common::key::Key;

/// `GET <key>` from the volume `from` (`host:port`, an `http://` and a
/// trailing `/` tolerated), with `params` in the query (e.g. a pinned
/// `write`), and only `range` of it when given (`206` expected then).
pub async fn get(
    state: &AppState,
    from: &str,
    key: &Key,
    params: &[(&str, &str)],
    range: Option<Range<u64>>,
) -> Result<reqwest::Response, ApiError> {
    let from = from.trim_start_matches("http://").trim_end_matches('/');
    let url = trove_common::signing::url(
        state.config.signer.as_ref(),
        state.config.url_ttl,
        "GET",
        from,
        key.as_str(),
        params,
    );
    let mut req = state.http.get(&url);
    if let Some(r) = &range {
        req = req.header(reqwest::header::RANGE, format!("bytes={}-{}", r.start, r.end - 1));
    }
    let stall = state.config.timeouts.stall;
    let resp = tokio::time::timeout(stall, req.send())
        .await
        .map_err(|_| ApiError::Upstream(format!("{from} did not answer within {stall:?}")))?
        .map_err(|e| ApiError::Upstream(format!("cannot reach {from}: {e}")))?;
    let expected = match range {
        Some(_) => reqwest::StatusCode::PARTIAL_CONTENT,
        None => reqwest::StatusCode::OK,
    };
    if resp.status() != expected {
        return Err(ApiError::Upstream(format!(
            "{from} answered {} for {key}",
            resp.status()
        )));
    }
    Ok(resp)
}
