//! Parsing of the command-line flags every binary shares: durations
//! (`30s`, `5m`), sizes (`256MiB`) and the master's URL.

use std::time::Duration;

/// `"1.5GiB"` → `(1.5, "GiB")`; `None` when it does not start with a number.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// Parses a duration flag: `250ms`, `30s`, `5m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) =
        number_and_unit(s).ok_or_else(|| format!("`{s}` is not a duration like 500ms, 30s, 5m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("`{s}` has an unknown unit; use ms, s, m, h or d")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is too long a duration"))
}

/// A duration flag that must not be zero: a timeout (zero would fail
/// every call at once), an interval (zero would spin) or a URL's lifetime
/// (zero would sign URLs already expired).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("`{s}` must be longer than zero")),
        d => Ok(d),
    }
}

/// Parses a size flag: `0`, `4096`, `512KiB`, `256MiB`, `1GiB`, `2TiB`
/// (also `KB`/`MB`/`GB`/`TB` as powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = number_and_unit(s).ok_or_else(|| format!("`{s}` is not a size like 512MiB or 1GiB"))?;
    let scale: f64 = match unit {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => {
            return Err(format!(
                "`{other}` is not a size unit; use B, KiB, MiB, GiB or TiB"
            ))
        }
    };
    Ok((n * scale) as u64)
}

/// Parses a master URL: `http://host:port` or `https://…`, or a bare
/// `host:port` (taken as `http://`). A bare word with neither scheme nor
/// port (`notaurl`, a typo) is refused rather than read as the host
/// `notaurl` on port 80, which would only fail later, after every retry,
/// as an address that cannot be looked up; so is a path or a query (keys
/// are the whole path).
pub fn parse_master_url(raw: &str) -> Result<reqwest::Url, String> {
    let like = "is not a master URL like http://127.0.0.1:3000";
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else if raw.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
    }) {
        format!("http://{raw}")
    } else {
        return Err(format!("`{raw}` {like} (give the scheme, or host:port)"));
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| format!("`{raw}` {like}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("`{raw}` {like}"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(format!(
            "`{raw}`: a master URL has no path or query (keys are the whole path)"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_must_be_positive() {
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_timeout("0").unwrap_err().contains("longer than zero"));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn master_urls() {
        for (raw, url) in [
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000/"),
            ("https://trove.example/", "https://trove.example/"),
            ("localhost:3000", "http://localhost:3000/"),
        ] {
            assert_eq!(parse_master_url(raw).unwrap().as_str(), url);
        }
        for bad in [
            "notaurl",
            "ftp://x",
            "http://",
            "http://h:1/path",
            "http://h:1/?q",
            ":3000",
            "",
        ] {
            assert!(parse_master_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        // Too long for a Duration: an error, never a panic.
        assert!(parse_duration("100000000000000000000").is_err());
        assert!(parse_duration("1e300d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
    }
}
