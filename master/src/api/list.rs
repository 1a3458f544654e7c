//! `GET /prefix?list` and `GET /prefix?unlinked`: one page of the keys
//! under a prefix, `{"next": "…", "keys": [...]}`, plus `"prefixes"` with
//! a `delimiter` and `"objects"` with `detail`. The paging and roll-up
//! rules are [`crate::index::Listing`]'s.

use crate::error::ApiError;
use crate::index::{Bound, Listing};
use crate::AppState;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use trove_common::key::{decode_prefix, percent_decode};
use trove_common::record::{Record, State};

/// Without `limit`, a listing may return at most this many entries (`413`
/// beyond, as minikeyvalue).
pub const MAX_UNPAGED_KEYS: usize = 1_000_000;
/// … and with `detail`, this many (each object is a whole record).
pub const MAX_UNPAGED_OBJECTS: usize = 100_000;

/// A parsed listing query.
#[derive(Debug, PartialEq, Default)]
pub struct ListQuery {
    /// Live keys (`?list`) or unlinked ones (`?unlinked`).
    pub state: Option<State>,
    /// First key to return (inclusive).
    pub start: Option<String>,
    /// List what comes after this key or common prefix (exclusive).
    pub after: Option<String>,
    pub limit: Option<usize>,
    /// Roll keys up into common prefixes at this text.
    pub delimiter: Option<String>,
    /// The prefix, as sent (percent-encoded), when it comes as `prefix=`
    /// rather than as the path: URL parsers collapse a path's `.` and `..`
    /// segments (`%2e` too), so a prefix such as `/dir/.` (the dotfiles of
    /// `dir/`) can only travel in the query.
    pub prefix: Option<String>,
    /// Answer each key's size, digests, dates and content type too.
    pub detail: bool,
}

impl ListQuery {
    /// `Ok(None)` when the query string is not a listing at all.
    pub fn parse(query: &str) -> Result<Option<ListQuery>, ApiError> {
        let mut q = ListQuery::default();
        let (mut limit_seen, mut detail_seen) = (false, false);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "list" | "unlinked" => {
                    let s = if name == "list" {
                        State::Live
                    } else {
                        State::Unlinked
                    };
                    match q.state {
                        Some(prev) if prev != s => {
                            return Err(ApiError::BadRequest(
                                "use either ?list or ?unlinked, not both".into(),
                            ))
                        }
                        Some(_) => return Err(given_twice(name)),
                        None => q.state = Some(s),
                    }
                }
                "start" => once(&mut q.start, name, text(name, value)?)?,
                "after" => once(&mut q.after, name, text(name, value)?)?,
                "delimiter" => once(&mut q.delimiter, name, text(name, value)?)?,
                "prefix" => once(&mut q.prefix, name, value.to_string())?,
                "limit" => {
                    if std::mem::replace(&mut limit_seen, true) {
                        return Err(given_twice(name));
                    }
                    q.limit = Some(value.parse::<usize>().map_err(|_| {
                        ApiError::BadRequest(format!("limit must be a non-negative integer, not `{value}`"))
                    })?);
                }
                "detail" => {
                    if std::mem::replace(&mut detail_seen, true) {
                        return Err(given_twice(name));
                    }
                    q.detail = match value {
                        "" | "1" | "true" => true,
                        "0" | "false" => false,
                        other => {
                            return Err(ApiError::BadRequest(format!(
                                "detail is a flag: give it bare, or as detail=1 or detail=0, not `{other}`"
                            )))
                        }
                    };
                }
                _ => return Ok(None),
            }
        }
        if q.state.is_none() {
            return Ok(None);
        }
        if q.start.is_some() && q.after.is_some() {
            return Err(ApiError::BadRequest(
                "give start (inclusive) or after (exclusive), not both".into(),
            ));
        }
        Ok(Some(q))
    }

    /// The index listing this query asks for, at most `limit` entries.
    fn listing(self, prefix: String, limit: usize) -> Listing {
        let from = match (self.start, self.after) {
            (Some(s), _) => Bound::Start(s),
            (None, Some(a)) => Bound::After(a),
            (None, None) => Bound::Beginning,
        };
        Listing {
            prefix,
            from,
            // An empty delimiter rolls nothing up (as S3).
            delimiter: self.delimiter.filter(|d| !d.is_empty()),
            limit,
            state: self.state.unwrap_or(State::Live),
            detail: self.detail,
        }
    }
}

/// A percent-decoded UTF-8 parameter value.
fn text(name: &str, value: &str) -> Result<String, ApiError> {
    let raw = percent_decode(value.as_bytes()).map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))?;
    String::from_utf8(raw).map_err(|_| ApiError::BadRequest(format!("{name} is not UTF-8")))
}

/// Sets a parameter given at most once: taking the last value silently
/// would hide the caller's mistake.
fn once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), ApiError> {
    if slot.replace(value).is_some() {
        return Err(given_twice(name));
    }
    Ok(())
}

fn given_twice(name: &str) -> ApiError {
    ApiError::BadRequest(format!("{name} was given more than once; give it once"))
}

/// The answer.
#[derive(Serialize)]
struct Answer {
    next: String,
    keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefixes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<Vec<Object>>,
}

/// One key of a `detail` listing.
#[derive(Serialize, Debug, PartialEq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// Hex md5 of the value.
    pub md5: String,
    /// The ETag readers get, unquoted.
    pub etag: String,
    /// Unix ms.
    pub created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl Object {
    /// What a listing says about `key`, whose record reads as `record`.
    pub fn new(key: String, record: Record) -> Object {
        Object {
            key,
            size: record.size,
            etag: record.etag().to_string(),
            content_type: record.content_type().map(str::to_string),
            md5: record.md5,
            created: record.created,
            write: record.write,
            expires: record.expires,
        }
    }
}

pub async fn list(state: &AppState, raw_path: &str, mut q: ListQuery) -> Result<Response, ApiError> {
    let prefix = match q.prefix.take() {
        None => decode_prefix(raw_path)?,
        Some(raw) if raw_path == "/" => decode_prefix(&raw).map_err(|e| {
            ApiError::BadRequest(format!(
                "prefix= must be a path from the root (such as /photos/): {e}"
            ))
        })?,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "give the prefix as the path or as prefix= on GET /?list, not both".into(),
            ))
        }
    };
    let (with_prefixes, detail, paged) = (q.delimiter.is_some(), q.detail, q.limit.is_some());
    let cap = if detail {
        MAX_UNPAGED_OBJECTS
    } else {
        MAX_UNPAGED_KEYS
    };
    // A page holds at most `cap` entries, however large a `limit` asks
    // for: `next` says where the rest starts.
    let limit = q.limit.unwrap_or(cap).min(cap);
    let page = state.index.list(q.listing(prefix, limit)).await?;
    if !paged && page.next.is_some() {
        return Err(ApiError::TooManyKeys(cap));
    }
    let objects = detail.then(|| {
        page.keys
            .iter()
            .cloned()
            .zip(page.records)
            .map(|(k, r)| Object::new(k, r))
            .collect()
    });
    Ok(Json(Answer {
        next: page.next.unwrap_or_default(),
        keys: page.keys,
        prefixes: with_prefixes.then_some(page.prefixes),
        objects,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> ListQuery {
        ListQuery::parse(q).unwrap().unwrap()
    }

    fn refused(q: &str) -> bool {
        matches!(ListQuery::parse(q), Err(ApiError::BadRequest(_)))
    }

    #[test]
    fn parses_listing_queries() {
        assert_eq!(
            parse("list"),
            ListQuery {
                state: Some(State::Live),
                ..ListQuery::default()
            }
        );
        assert_eq!(
            parse("unlinked&start=%2Fa%20b&limit=10"),
            ListQuery {
                state: Some(State::Unlinked),
                start: Some("/a b".into()),
                limit: Some(10),
                ..ListQuery::default()
            }
        );
        assert_eq!(
            parse("list&delimiter=%2F&after=%2Fb%2F%E2%82%AC%2B&detail&limit=0"),
            ListQuery {
                state: Some(State::Live),
                after: Some("/b/€+".into()),
                delimiter: Some("/".into()),
                detail: true,
                limit: Some(0),
                ..ListQuery::default()
            }
        );
        assert_eq!(parse("list=1&limit=0").limit, Some(0));
        assert!(parse("list&detail=1").detail);
        assert!(!parse("list&detail=0").detail);
        // The prefix as a parameter stays as sent: it is decoded as a path.
        assert_eq!(
            parse("list&prefix=%2Fdir%2F.").prefix.as_deref(),
            Some("%2Fdir%2F.")
        );
        assert!(ListQuery::parse("foo").unwrap().is_none());
        assert!(ListQuery::parse("list&foo=1").unwrap().is_none());
        assert!(ListQuery::parse("start=x").unwrap().is_none());
        for bad in [
            "list&limit=ten",
            "list&limit=-1",
            "list&unlinked",
            "list&start=%zz",
            "list&delimiter=%ff",
            "list&after=%2",
            "list&detail=yes",
            "list&start=a&after=b",
            "list&limit=1&limit=2",
            "list&start=a&start=b",
            "list&after=a&after=b",
            "list&delimiter=a&delimiter=a",
            "list&detail&detail",
            "list&prefix=%2Fa&prefix=%2Fb",
            "list&limit=1&start=a&limit=1",
            "list&list",
            "unlinked&unlinked",
        ] {
            assert!(refused(bad), "{bad}");
        }
    }

    #[test]
    fn queries_become_listings() {
        let l = parse("list&after=%2Fb%2Fx&delimiter=%2F&limit=3").listing("/b/".into(), 3);
        assert_eq!(l.from, Bound::After("/b/x".into()));
        assert_eq!(l.delimiter.as_deref(), Some("/"));
        // An empty delimiter is none.
        let l = parse("unlinked&delimiter=&start=%2Fb").listing("/b/".into(), 3);
        assert_eq!(
            (l.from, l.delimiter, l.state),
            (Bound::Start("/b".into()), None, State::Unlinked)
        );
    }
}
