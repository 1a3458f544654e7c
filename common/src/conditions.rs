//! Conditional requests (RFC 9110 §13): `If-Match`, `If-None-Match`,
//! `If-Unmodified-Since` and, on reads, `If-Modified-Since`, evaluated in
//! the RFC's order against a key's current value.
//!
//! On a write or a delete a failed condition is `412` and nothing
//! changes: the master checks them under the key's lock, so no other
//! write or delete of the key can come between the check and the change
//! (S3's conditional `PutObject`, "create only if absent", "delete only
//! the version I read"). On a read, `If-None-Match` and `If-Modified-Since`
//! answer `304 Not Modified` instead (a browser's or a cache's
//! revalidation), the other two `412`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One entity tag of a list, as sent (without its quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    weak: bool,
    value: String,
}

/// The value of one condition header: `*`, or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tags {
    Any,
    List(Vec<Tag>),
}

impl Tags {
    /// One entity tag (unquoted), as a caller that parsed it already has
    /// it (the S3 gateway: s3s parses `If-Match` and its kin).
    pub fn one(value: impl Into<String>, weak: bool) -> Tags {
        Tags::List(vec![Tag {
            weak,
            value: value.into(),
        }])
    }

    /// Parses `*` or `"a", W/"b"`; `None` for anything else.
    fn parse(header: &str) -> Option<Tags> {
        let s = header.trim();
        if s == "*" {
            return Some(Tags::Any);
        }
        let mut tags = vec![];
        let mut rest = s;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                break;
            }
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let inner = quoted.strip_prefix('"')?;
            let end = inner.find('"')?;
            tags.push(Tag {
                weak,
                value: inner[..end].to_string(),
            });
            rest = &inner[end + 1..];
            let next = rest.trim_start_matches([' ', '\t']);
            if !(next.is_empty() || next.starts_with(',')) {
                return None;
            }
        }
        (!tags.is_empty()).then_some(Tags::List(tags))
    }
}

/// A request's preconditions, from its conditional headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    if_match: Option<Tags>,
    if_none_match: Option<Tags>,
    if_unmodified_since: Option<SystemTime>,
    if_modified_since: Option<SystemTime>,
}

/// The key's current value, as the conditions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current<'a> {
    /// Its ETag, unquoted.
    pub etag: &'a str,
    /// When it was written (its `Last-Modified`).
    pub modified: SystemTime,
}

impl<'a> Current<'a> {
    /// A value with ETag `etag`, written at `created_ms` (Unix ms).
    pub fn new(etag: &'a str, created_ms: u64) -> Current<'a> {
        Current {
            etag,
            modified: UNIX_EPOCH + Duration::from_millis(created_ms),
        }
    }

    /// Whether it was modified after `date`, at the one-second resolution
    /// of an HTTP date (so that a `Last-Modified` sent back as it was
    /// received compares equal).
    fn modified_after(&self, date: SystemTime) -> bool {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        secs(self.modified) > secs(date)
    }
}

/// Why a request's preconditions failed (answered `412`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failed {
    #[error("no value at this key, and If-Match requires one")]
    Absent,
    #[error("the key's current ETag is not one that If-Match names")]
    Changed,
    #[error("the key has a value, and If-None-Match: * requires none")]
    Exists,
    #[error("the key's current ETag is one that If-None-Match names")]
    Unchanged,
    #[error("the key's value was written after the date If-Unmodified-Since gives")]
    ModifiedSince,
}

/// What a read's preconditions ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadVerdict {
    /// Serve the value.
    Serve,
    /// `304`: the client's copy is current (`If-None-Match`,
    /// `If-Modified-Since`).
    NotModified,
    /// `412`.
    Failed(Failed),
}

impl Preconditions {
    /// From conditions already parsed (`None`: not given).
    pub fn new(
        if_match: Option<Tags>,
        if_none_match: Option<Tags>,
        if_unmodified_since: Option<SystemTime>,
        if_modified_since: Option<SystemTime>,
    ) -> Preconditions {
        Preconditions {
            if_match,
            if_none_match,
            if_unmodified_since,
            if_modified_since,
        }
    }

    /// From the two entity-tag headers' values (`None`: not sent). An
    /// unparsable value is an error a person can act on.
    pub fn parse(if_match: Option<&str>, if_none_match: Option<&str>) -> Result<Preconditions, String> {
        let parse = |name: &str, v: Option<&str>| {
            v.map(|v| {
                Tags::parse(v).ok_or_else(|| {
                    format!(
                        "{name} must be * or a list of quoted entity tags (\"etag\", W/\"etag\"), not `{v}`"
                    )
                })
            })
            .transpose()
        };
        Ok(Preconditions {
            if_match: parse("If-Match", if_match)?,
            if_none_match: parse("If-None-Match", if_none_match)?,
            ..Preconditions::default()
        })
    }

    /// A read's conditions, from its headers: `If-Match`, `If-None-Match`
    /// (each at most once: two lists could disagree, and honouring one
    /// would hide the other), `If-Unmodified-Since` and `If-Modified-Since`
    /// (a date that cannot be read is ignored, as RFC 9110 §13.1.3–4 asks).
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Result<Preconditions, String> {
        Preconditions::read_headers(headers, false)
    }

    /// A write's or a delete's conditions, from its headers: as
    /// [`Preconditions::from_headers`], but an `If-Unmodified-Since` that
    /// cannot be read is an error, not ignored. RFC 9110 would ignore it;
    /// but a guard the client meant to hold, dropped, lets the change it
    /// guarded go ahead (a typed date with the wrong weekday would delete
    /// a value its sender meant to keep), so Trove refuses the request.
    pub fn for_change(headers: &axum::http::HeaderMap) -> Result<Preconditions, String> {
        Preconditions::read_headers(headers, true)
    }

    fn read_headers(headers: &axum::http::HeaderMap, change: bool) -> Result<Preconditions, String> {
        use axum::http::header;
        let one = |name: header::HeaderName, shown: &str| crate::http::single(headers, name.as_str(), shown);
        let unmodified_since = one(header::IF_UNMODIFIED_SINCE, "If-Unmodified-Since");
        if change {
            if let Some(date) = unmodified_since.clone()? {
                if httpdate::parse_http_date(date.trim()).is_err() {
                    return Err(format!(
                        "If-Unmodified-Since must be an HTTP date such as `Sun, 06 Nov 1994 08:49:37 GMT` (with the right weekday), not `{date}`; nothing was changed"
                    ));
                }
            }
        }
        Ok(Preconditions::parse(
            one(header::IF_MATCH, "If-Match")?,
            one(header::IF_NONE_MATCH, "If-None-Match")?,
        )?
        // A date that cannot be read (sent twice, not text) is ignored,
        // as RFC 9110 §13.1.3–4 asks of an invalid one (a change's
        // If-Unmodified-Since was checked above).
        .with_dates(
            unmodified_since.unwrap_or(None),
            one(header::IF_MODIFIED_SINCE, "If-Modified-Since").unwrap_or(None),
        ))
    }

    /// The same with the two date headers' values. A value that is not an
    /// HTTP date is ignored, as RFC 9110 requires.
    pub fn with_dates(
        mut self,
        if_unmodified_since: Option<&str>,
        if_modified_since: Option<&str>,
    ) -> Preconditions {
        let date = |v: Option<&str>| v.and_then(|v| httpdate::parse_http_date(v.trim()).ok());
        self.if_unmodified_since = date(if_unmodified_since);
        self.if_modified_since = date(if_modified_since);
        self
    }

    /// Whether any condition was given.
    pub fn is_empty(&self) -> bool {
        self == &Preconditions::default()
    }

    /// Checks a write's or a delete's conditions against the key's
    /// current value (`None` when it has none), in RFC 9110's order:
    /// `If-Match` (strong comparison: a weak tag never matches), or
    /// without it `If-Unmodified-Since`; then `If-None-Match` (weak
    /// comparison). `If-Modified-Since` applies to reads only.
    pub fn check(&self, current: Option<Current<'_>>) -> Result<(), Failed> {
        self.check_unchanged(current)?;
        match (&self.if_none_match, current) {
            (None, _) | (Some(_), None) => Ok(()),
            (Some(Tags::Any), Some(_)) => Err(Failed::Exists),
            (Some(Tags::List(tags)), Some(c)) if tags.iter().any(|t| t.value == c.etag) => {
                Err(Failed::Unchanged)
            }
            (Some(Tags::List(_)), Some(_)) => Ok(()),
        }
    }

    /// Checks a read's conditions against the value it would serve, in
    /// RFC 9110's order: `If-Match`, or without it `If-Unmodified-Since`
    /// (`412`); then `If-None-Match`, or without it `If-Modified-Since`
    /// (`304`).
    pub fn check_read(&self, current: Current<'_>) -> ReadVerdict {
        if let Err(failed) = self.check_unchanged(Some(current)) {
            return ReadVerdict::Failed(failed);
        }
        let unchanged = match (&self.if_none_match, self.if_modified_since) {
            (Some(Tags::Any), _) => true,
            (Some(Tags::List(tags)), _) => tags.iter().any(|t| t.value == current.etag),
            (None, Some(date)) => !current.modified_after(date),
            (None, None) => false,
        };
        if unchanged {
            ReadVerdict::NotModified
        } else {
            ReadVerdict::Serve
        }
    }

    /// `If-Match`, or without it `If-Unmodified-Since` (ignored when the
    /// key has no value: there is no date to compare).
    fn check_unchanged(&self, current: Option<Current<'_>>) -> Result<(), Failed> {
        match (&self.if_match, current) {
            (None, Some(c)) => match self.if_unmodified_since {
                Some(date) if c.modified_after(date) => Err(Failed::ModifiedSince),
                _ => Ok(()),
            },
            (None, None) => Ok(()),
            (Some(_), None) => Err(Failed::Absent),
            (Some(Tags::Any), Some(_)) => Ok(()),
            (Some(Tags::List(tags)), Some(c)) => {
                if tags.iter().any(|t| !t.weak && t.value == c.etag) {
                    Ok(())
                } else {
                    Err(Failed::Changed)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(if_match: Option<&str>, if_none_match: Option<&str>) -> Preconditions {
        Preconditions::parse(if_match, if_none_match).unwrap()
    }

    /// A value with ETag `etag`, written at 2023-11-14 22:13:20.500 UTC.
    fn cur(etag: &str) -> Current<'_> {
        Current::new(etag, 1_700_000_000_500)
    }

    const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";
    const THEN: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const AFTER: &str = "Tue, 14 Nov 2023 22:13:21 GMT";

    fn dated(if_unmodified_since: Option<&str>, if_modified_since: Option<&str>) -> Preconditions {
        Preconditions::default().with_dates(if_unmodified_since, if_modified_since)
    }

    #[test]
    fn parses_stars_and_lists() {
        assert_eq!(Tags::parse(" * "), Some(Tags::Any));
        let tag = |weak, v: &str| Tag {
            weak,
            value: v.into(),
        };
        assert_eq!(
            Tags::parse(r#""a", W/"b" ,"c,d""#),
            Some(Tags::List(vec![
                tag(false, "a"),
                tag(true, "b"),
                tag(false, "c,d")
            ]))
        );
        for bad in ["", "a", r#""a" b"#, r#""a"#, "W/a", r#""a" "b""#, ",,"] {
            assert_eq!(Tags::parse(bad), None, "{bad}");
        }
        let e = Preconditions::parse(Some("abc"), None).unwrap_err();
        assert!(e.contains("If-Match") && e.contains("`abc`"), "{e}");
    }

    #[test]
    fn none_given_always_passes() {
        assert!(p(None, None).is_empty());
        assert_eq!(p(None, None).check(None), Ok(()));
        assert_eq!(p(None, None).check(Some(cur("x"))), Ok(()));
    }

    #[test]
    fn if_none_match_star_creates_only() {
        let c = p(None, Some("*"));
        assert!(!c.is_empty());
        assert_eq!(c.check(None), Ok(()));
        assert_eq!(c.check(Some(cur("x"))), Err(Failed::Exists));
    }

    #[test]
    fn if_match_compares_strongly() {
        let c = p(Some(r#""x", "y""#), None);
        assert_eq!(c.check(Some(cur("y"))), Ok(()));
        assert_eq!(c.check(Some(cur("z"))), Err(Failed::Changed));
        assert_eq!(c.check(None), Err(Failed::Absent));
        assert_eq!(
            p(Some(r#"W/"y""#), None).check(Some(cur("y"))),
            Err(Failed::Changed)
        );
        assert_eq!(p(Some("*"), None).check(Some(cur("y"))), Ok(()));
        assert_eq!(p(Some("*"), None).check(None), Err(Failed::Absent));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert_eq!(
            p(None, Some(r#"W/"y""#)).check(Some(cur("y"))),
            Err(Failed::Unchanged)
        );
        assert_eq!(p(None, Some(r#""x""#)).check(Some(cur("y"))), Ok(()));
        // Both: If-Match first.
        assert_eq!(
            p(Some(r#""y""#), Some(r#""y""#)).check(Some(cur("y"))),
            Err(Failed::Unchanged)
        );
        assert_eq!(
            p(Some(r#""x""#), Some(r#""y""#)).check(Some(cur("y"))),
            Err(Failed::Changed)
        );
    }

    #[test]
    fn if_unmodified_since_refuses_a_newer_value_unless_if_match_is_given() {
        assert_eq!(
            dated(Some(BEFORE), None).check(Some(cur("y"))),
            Err(Failed::ModifiedSince)
        );
        assert_eq!(
            dated(Some(THEN), None).check(Some(cur("y"))),
            Ok(()),
            "same second"
        );
        assert_eq!(dated(Some(AFTER), None).check(Some(cur("y"))), Ok(()));
        assert_eq!(dated(Some(BEFORE), None).check(None), Ok(()), "no value, no date");
        let with_match = p(Some(r#""y""#), None).with_dates(Some(BEFORE), None);
        assert_eq!(with_match.check(Some(cur("y"))), Ok(()), "If-Match wins");
        assert!(dated(Some("last week"), None).is_empty(), "not a date: ignored");
        assert_eq!(
            dated(None, Some(BEFORE)).check(Some(cur("y"))),
            Ok(()),
            "If-Modified-Since is for reads"
        );
    }

    #[test]
    fn reads_answer_not_modified_or_failed() {
        let serve = |c: Preconditions| c.check_read(cur("y"));
        assert_eq!(serve(Preconditions::default()), ReadVerdict::Serve);
        assert_eq!(serve(p(None, Some(r#"W/"y""#))), ReadVerdict::NotModified);
        assert_eq!(serve(p(None, Some("*"))), ReadVerdict::NotModified);
        assert_eq!(serve(p(None, Some(r#""x""#))), ReadVerdict::Serve);
        assert_eq!(serve(dated(None, Some(THEN))), ReadVerdict::NotModified);
        assert_eq!(serve(dated(None, Some(BEFORE))), ReadVerdict::Serve);
        // If-None-Match decides alone when both are sent.
        let both = p(None, Some(r#""x""#)).with_dates(None, Some(AFTER));
        assert_eq!(serve(both), ReadVerdict::Serve);
        assert_eq!(
            serve(p(Some(r#""x""#), None)),
            ReadVerdict::Failed(Failed::Changed)
        );
        assert_eq!(
            serve(dated(Some(BEFORE), None)),
            ReadVerdict::Failed(Failed::ModifiedSince)
        );
    }

    #[test]
    fn a_change_refuses_a_date_it_cannot_read_and_a_read_ignores_it() {
        use axum::http::{HeaderMap, HeaderValue};
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert("if-unmodified-since", HeaderValue::from_str(value).unwrap());
            h
        };
        // ISO 8601, Unix seconds, and a real date with the wrong weekday
        // (1 January 2000 was a Saturday).
        for bad in [
            "2024-01-01T00:00:00Z",
            "1704067200",
            "Thu, 01 Jan 2000 00:00:00 GMT",
        ] {
            let e = Preconditions::for_change(&with(bad)).unwrap_err();
            assert!(e.contains("If-Unmodified-Since") && e.contains(bad), "{e}");
            assert!(
                Preconditions::from_headers(&with(bad)).unwrap().is_empty(),
                "{bad}"
            );
        }
        let good = Preconditions::for_change(&with(BEFORE)).unwrap();
        assert_eq!(good.check(Some(cur("y"))), Err(Failed::ModifiedSince));
        let mut twice = with(BEFORE);
        twice.append("if-unmodified-since", HeaderValue::from_static(AFTER));
        assert!(Preconditions::for_change(&twice).is_err());
    }
}
