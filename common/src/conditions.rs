//! `If-Match` and `If-None-Match` on a write (RFC 9110 §13.1.1–2): the
//! write happens only if the key's current value passes them. The master
//! checks them under the key's lock, so no other write or delete of the
//! key can come between the check and the write (S3's conditional
//! `PutObject`, and "create only if absent" for anyone).

/// One entity tag of a list, as sent (without its quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tag {
    weak: bool,
    value: String,
}

/// The value of one condition header: `*`, or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tags {
    Any,
    List(Vec<Tag>),
}

impl Tags {
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

/// A write's preconditions, from its `If-Match` and `If-None-Match`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    if_match: Option<Tags>,
    if_none_match: Option<Tags>,
}

/// Why a write's preconditions failed (answered `412`).
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
}

impl Preconditions {
    /// From the two headers' values (`None`: not sent). An unparsable
    /// value is an error a person can act on.
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
        })
    }

    /// Whether any condition was given.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// Checks them against the key's current value: its ETag (unquoted),
    /// or `None` when it has no value. In RFC 9110's order: `If-Match`
    /// (strong comparison: a weak tag never matches), then `If-None-Match`
    /// (weak comparison).
    pub fn check(&self, current: Option<&str>) -> Result<(), Failed> {
        match (&self.if_match, current) {
            (None, _) => {}
            (Some(_), None) => return Err(Failed::Absent),
            (Some(Tags::Any), Some(_)) => {}
            (Some(Tags::List(tags)), Some(etag)) => {
                if !tags.iter().any(|t| !t.weak && t.value == etag) {
                    return Err(Failed::Changed);
                }
            }
        }
        match (&self.if_none_match, current) {
            (None, _) | (Some(_), None) => Ok(()),
            (Some(Tags::Any), Some(_)) => Err(Failed::Exists),
            (Some(Tags::List(tags)), Some(etag)) if tags.iter().any(|t| t.value == etag) => {
                Err(Failed::Unchanged)
            }
            (Some(Tags::List(_)), Some(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(if_match: Option<&str>, if_none_match: Option<&str>) -> Preconditions {
        Preconditions::parse(if_match, if_none_match).unwrap()
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
        assert_eq!(p(None, None).check(Some("x")), Ok(()));
    }

    #[test]
    fn if_none_match_star_creates_only() {
        let c = p(None, Some("*"));
        assert!(!c.is_empty());
        assert_eq!(c.check(None), Ok(()));
        assert_eq!(c.check(Some("x")), Err(Failed::Exists));
    }

    #[test]
    fn if_match_compares_strongly() {
        let c = p(Some(r#""x", "y""#), None);
        assert_eq!(c.check(Some("y")), Ok(()));
        assert_eq!(c.check(Some("z")), Err(Failed::Changed));
        assert_eq!(c.check(None), Err(Failed::Absent));
        assert_eq!(p(Some(r#"W/"y""#), None).check(Some("y")), Err(Failed::Changed));
        assert_eq!(p(Some("*"), None).check(Some("y")), Ok(()));
        assert_eq!(p(Some("*"), None).check(None), Err(Failed::Absent));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert_eq!(p(None, Some(r#"W/"y""#)).check(Some("y")), Err(Failed::Unchanged));
        assert_eq!(p(None, Some(r#""x""#)).check(Some("y")), Ok(()));
        // Both: If-Match first.
        assert_eq!(
            p(Some(r#""y""#), Some(r#""y""#)).check(Some("y")),
            Err(Failed::Unchanged)
        );
        assert_eq!(
            p(Some(r#""x""#), Some(r#""y""#)).check(Some("y")),
            Err(Failed::Changed)
        );
    }
}
