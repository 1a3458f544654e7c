//! `GET /prefix?list` and `GET /prefix?unlinked`, with `start` and `limit`:
//! `{"next": "<first key not returned, or empty>", "keys": [...]}`.

use crate::error::ApiError;
use crate::AppState;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use trove_common::key::{decode_prefix, percent_decode};
use trove_common::record::State;

/// Without `limit`, a listing may return at most this many keys (`413`
/// beyond, as minikeyvalue).
pub const MAX_UNPAGED_KEYS: usize = 1_000_000;

/// A parsed listing query.
#[derive(Debug, PartialEq)]
pub struct ListQuery {
    /// Live keys (`?list`) or unlinked ones (`?unlinked`).
    pub state: State,
    /// First key to return (inclusive).
    pub start: Option<String>,
    pub limit: Option<usize>,
}

impl ListQuery {
    /// `Ok(None)` when the query string is not a listing at all.
    pub fn parse(query: &str) -> Result<Option<ListQuery>, ApiError> {
        let mut state = None;
        let (mut start, mut limit) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "list" | "unlinked" => {
                    let s = if name == "list" {
                        State::Live
                    } else {
                        State::Unlinked
                    };
                    if state.is_some_and(|prev| prev != s) {
                        return Err(ApiError::BadRequest(
                            "use either ?list or ?unlinked, not both".into(),
                        ));
                    }
                    state = Some(s);
                }
                // The last of two values silently winning would hide a
                // caller's mistake.
                "start" | "limit"
                    if (name == "start" && start.is_some()) || (name == "limit" && limit.is_some()) =>
                {
                    return Err(ApiError::BadRequest(format!(
                        "{name} was given more than once; give it once"
                    )));
                }
                "start" => {
                    let raw = percent_decode(value.as_bytes())
                        .map_err(|e| ApiError::BadRequest(format!("start: {e}")))?;
                    start = Some(
                        String::from_utf8(raw)
                            .map_err(|_| ApiError::BadRequest("start is not UTF-8".into()))?,
                    );
                }
                "limit" => {
                    limit = Some(value.parse::<usize>().map_err(|_| {
                        ApiError::BadRequest(format!("limit must be a non-negative integer, not `{value}`"))
                    })?);
                }
                _ => return Ok(None),
            }
        }
        Ok(state.map(|state| ListQuery { state, start, limit }))
    }
}

#[derive(Serialize)]
struct Listing {
    next: String,
    keys: Vec<String>,
}

pub async fn list(state: &AppState, raw_path: &str, q: ListQuery) -> Result<Response, ApiError> {
    let prefix = decode_prefix(raw_path)?;
    let max = q.limit.unwrap_or(MAX_UNPAGED_KEYS);
    let page = state.index.list(prefix, q.start, max, q.state).await?;
    if q.limit.is_none() && page.next.is_some() {
        return Err(ApiError::TooManyKeys(MAX_UNPAGED_KEYS));
    }
    Ok(Json(Listing {
        next: page.next.unwrap_or_default(),
        keys: page.keys,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listing_queries() {
        let q = ListQuery::parse("list").unwrap().unwrap();
        assert_eq!(
            q,
            ListQuery {
                state: State::Live,
                start: None,
                limit: None
            }
        );
        let q = ListQuery::parse("unlinked&start=%2Fa%20b&limit=10")
            .unwrap()
            .unwrap();
        assert_eq!(
            q,
            ListQuery {
                state: State::Unlinked,
                start: Some("/a b".into()),
                limit: Some(10)
            }
        );
        assert_eq!(
            ListQuery::parse("list=1&limit=0").unwrap().unwrap().limit,
            Some(0)
        );
        assert!(ListQuery::parse("foo").unwrap().is_none());
        assert!(ListQuery::parse("list&foo=1").unwrap().is_none());
        assert!(ListQuery::parse("start=x").unwrap().is_none());
        assert!(matches!(
            ListQuery::parse("list&limit=ten"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            ListQuery::parse("list&limit=-1"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            ListQuery::parse("list&unlinked"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            ListQuery::parse("list&start=%zz"),
            Err(ApiError::BadRequest(_))
        ));
        for repeated in [
            "list&limit=1&limit=2",
            "list&start=a&start=b",
            "list&limit=1&start=a&limit=1",
        ] {
            assert!(
                matches!(ListQuery::parse(repeated), Err(ApiError::BadRequest(_))),
                "{repeated}"
            );
        }
    }
}
