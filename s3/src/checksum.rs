//! The upload body on its way to the master: checksums verified while it
//! streams, and its last chunk held back until the source ended cleanly.
//!
//! S3 clients send CRC32, CRC32C, CRC64NVME, SHA1 or SHA256 checksums in a
//! header or in an aws-chunked trailer (known only once the body has been
//! read), and s3s reports a payload that does not match its signature as
//! an error on the *last* poll of the body. Either failure must store
//! nothing. So [`Checked`] forwards every chunk but the most recent one;
//! only when the source has ended cleanly and every checksum matched does
//! it release that last chunk. A bad upload therefore never reaches the
//! master complete: its body ends short of its `Content-Length` (or, sent
//! chunked, with an error), and the master stores nothing.

use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::dto::Checksum;
use s3s::TrailingHeaders;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// Checksum header (and trailer) names, and what S3 calls them.
const ALGORITHMS: [(&str, &str); 5] = [
    ("x-amz-checksum-crc32", "CRC32"),
    ("x-amz-checksum-crc32c", "CRC32C"),
    ("x-amz-checksum-sha1", "SHA1"),
    ("x-amz-checksum-sha256", "SHA256"),
    ("x-amz-checksum-crc64nvme", "CRC64NVME"),
];

/// Why an upload body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// A checksum the client sent does not match the bytes.
    #[error("the {algorithm} checksum sent ({expected}) does not match the body's ({computed}); nothing was stored")]
    Mismatch {
        algorithm: &'static str,
        expected: String,
        computed: String,
    },
    /// The trailer the client announced never came.
    #[error("the request announced the trailer {0} but the body did not carry it")]
    MissingTrailer(String),
    /// The client's stream failed (a broken connection, or s3s found the
    /// payload does not match its signature).
    #[error("{0}")]
    Source(String),
}

/// Hands over the trailers once the body has been read (s3s's
/// `TrailingHeaders::take`).
pub type TrailersFn = Box<dyn Fn() -> Option<HeaderMap> + Send + Sync>;

/// What to check the body against.
#[derive(Default)]
pub struct Expected {
    /// Values from request headers (base64, as S3 sends them).
    pub headers: Checksum,
    /// The checksum trailer announced in `x-amz-trailer`, if any.
    pub trailer: Option<String>,
    /// Where s3s leaves the trailers once the body has been read.
    pub trailers: Option<TrailersFn>,
    /// Set once the body has ended and matched: the checksums it was
    /// checked against (header and trailer alike), for the answer to
    /// echo as AWS does.
    pub verified: Arc<OnceLock<Checksum>>,
}

impl Expected {
    /// Reads what the request announces: `x-amz-checksum-*` headers (as
    /// parsed by s3s into `headers`) and the `x-amz-trailer` name.
    pub fn new(headers: Checksum, request: &HeaderMap, trailers: Option<TrailingHeaders>) -> Expected {
        let trailer = request
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| v.starts_with("x-amz-checksum-"));
        Expected {
            headers,
            trailer,
            trailers: trailers.map(|t| Box::new(move || t.take()) as TrailersFn),
            verified: Arc::default(),
        }
    }

    /// A hasher for every algorithm that will be checked.
    fn hasher(&self) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        let wanted =
            |name: &str| header_value(&self.headers, name).is_some() || self.trailer.as_deref() == Some(name);
        if wanted(ALGORITHMS[0].0) {
            h.crc32 = Some(Default::default());
        }
        if wanted(ALGORITHMS[1].0) {
            h.crc32c = Some(Default::default());
        }
        if wanted(ALGORITHMS[2].0) {
            h.sha1 = Some(Default::default());
        }
        if wanted(ALGORITHMS[3].0) {
            h.sha256 = Some(Default::default());
        }
        if wanted(ALGORITHMS[4].0) {
            h.crc64nvme = Some(Default::default());
        }
        h
    }

    /// Compares what the body hashed to with every value sent.
    fn check(&self, computed: &Checksum) -> Result<(), BodyError> {
        let trailers = self.trailers.as_ref().and_then(|t| t()).unwrap_or_default();
        if let Some(name) = &self.trailer {
            if !trailers.contains_key(name.as_str()) {
                return Err(BodyError::MissingTrailer(name.clone()));
            }
        }
        for (name, algorithm) in ALGORITHMS {
            let from_trailer = trailers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            for expected in [header_value(&self.headers, name).cloned(), from_trailer]
                .into_iter()
                .flatten()
            {
                let got = header_value(computed, name).cloned().unwrap_or_default();
                if expected.trim() != got {
                    return Err(BodyError::Mismatch {
                        algorithm,
                        expected,
                        computed: got,
                    });
                }
            }
        }
        Ok(())
    }
}

fn header_value<'a>(c: &'a Checksum, name: &str) -> Option<&'a String> {
    match name {
        "x-amz-checksum-crc32" => c.checksum_crc32.as_ref(),
        "x-amz-checksum-crc32c" => c.checksum_crc32c.as_ref(),
        "x-amz-checksum-sha1" => c.checksum_sha1.as_ref(),
        "x-amz-checksum-sha256" => c.checksum_sha256.as_ref(),
        "x-amz-checksum-crc64nvme" => c.checksum_crc64nvme.as_ref(),
        _ => None,
    }
}

/// The checked, held-back body (see the module's doc).
pub struct Checked<S> {
    source: S,
    expected: Expected,
    hasher: Option<ChecksumHasher>,
    held: Option<Bytes>,
    done: bool,
}

impl<S> Checked<S> {
    pub fn new(source: S, expected: Expected) -> Checked<S> {
        let hasher = Some(expected.hasher());
        Checked {
            source,
            expected,
            hasher,
            held: None,
            done: false,
        }
    }
}

impl<S, E> Stream for Checked<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.source).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.held = None;
                    return Poll::Ready(Some(Err(BodyError::Source(e.to_string()))));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(h) = this.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let computed = this
                        .hasher
                        .take()
                        .map(ChecksumHasher::finalize)
                        .unwrap_or_default();
                    if let Err(e) = this.expected.check(&computed) {
                        this.held = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                    let _ = this.expected.verified.set(computed);
                    return Poll::Ready(this.held.take().map(Ok));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn crc32_b64(data: &[u8]) -> String {
        let mut h = ChecksumHasher {
            crc32: Some(Default::default()),
            ..Default::default()
        };
        h.update(data);
        h.finalize().checksum_crc32.unwrap()
    }

    fn chunks(parts: &[&'static str]) -> Vec<Result<Bytes, std::io::Error>> {
        parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
            .collect()
    }

    #[tokio::test]
    async fn the_last_chunk_waits_for_a_clean_end() {
        let expected = Expected {
            headers: Checksum {
                checksum_crc32: Some(crc32_b64(b"abcdef")),
                ..Default::default()
            },
            ..Default::default()
        };
        let out: Vec<_> = Checked::new(futures::stream::iter(chunks(&["ab", "cd", "ef"])), expected)
            .collect()
            .await;
        let got: Vec<Bytes> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, [b"ab", b"cd", b"ef"].map(|b| Bytes::from_static(b)));
    }

    #[tokio::test]
    async fn a_mismatch_never_releases_the_last_chunk() {
        let expected = Expected {
            headers: Checksum {
                checksum_crc32: Some(crc32_b64(b"something else")),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut s = Checked::new(futures::stream::iter(chunks(&["ab", "cd", "ef"])), expected);
        assert_eq!(s.next().await.unwrap().unwrap(), "ab");
        assert_eq!(s.next().await.unwrap().unwrap(), "cd");
        assert!(matches!(
            s.next().await,
            Some(Err(BodyError::Mismatch {
                algorithm: "CRC32",
                ..
            }))
        ));
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn an_error_on_the_last_poll_stores_nothing() {
        // s3s reports a payload that does not match its signature on the
        // last poll: the chunk before it must not be released.
        let mut items = chunks(&["ab", "cd"]);
        items.push(Err(std::io::Error::other("signature mismatch")));
        let mut s = Checked::new(futures::stream::iter(items), Expected::default());
        assert_eq!(s.next().await.unwrap().unwrap(), "ab");
        assert!(matches!(s.next().await, Some(Err(BodyError::Source(_)))));
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn trailers_are_checked_after_the_body() {
        let mut request = HeaderMap::new();
        request.insert("x-amz-trailer", "x-amz-checksum-crc32".parse().unwrap());
        let with = |value: Option<String>| {
            let mut e = Expected::new(Checksum::default(), &request, None);
            e.trailers = Some(Box::new(move || {
                let mut t = HeaderMap::new();
                if let Some(v) = &value {
                    t.insert("x-amz-checksum-crc32", v.parse().unwrap());
                }
                Some(t)
            }));
            e
        };
        // Announced but never sent.
        let out: Vec<_> = Checked::new(futures::stream::iter(chunks(&["ab"])), with(None))
            .collect()
            .await;
        assert!(matches!(out.as_slice(), [Err(BodyError::MissingTrailer(_))]));
        // Sent, wrong.
        let out: Vec<_> = Checked::new(
            futures::stream::iter(chunks(&["ab"])),
            with(Some(crc32_b64(b"x"))),
        )
        .collect()
        .await;
        assert!(matches!(out.as_slice(), [Err(BodyError::Mismatch { .. })]));
        // Sent, right.
        let out: Vec<_> = Checked::new(
            futures::stream::iter(chunks(&["ab"])),
            with(Some(crc32_b64(b"ab"))),
        )
        .collect()
        .await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap(), "ab");
        // No checksum asked for: everything passes through.
        let out: Vec<_> = Checked::new(futures::stream::iter(chunks(&["x"])), Expected::default())
            .collect()
            .await;
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn known_crc32_value() {
        // CRC32 of "123456789" is 0xCBF43926 (the standard check value).
        use base64::Engine;
        let want = base64::engine::general_purpose::STANDARD.encode(0xCBF4_3926u32.to_be_bytes());
        assert_eq!(crc32_b64(b"123456789"), want);
    }
}
