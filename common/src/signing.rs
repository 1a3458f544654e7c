//! Signed URLs: with a shared secret, the master signs every URL it hands
//! out (redirects) or calls (volume requests), and volumes refuse requests
//! without a valid, unexpired signature.
//!
//! A signature is HMAC-SHA256 over the method, the decoded path (the key,
//! or an operation like `/-/pull`), every query parameter but `sig` (sorted,
//! decoded) and the expiry, each field length-prefixed so that no two
//! different requests can produce the same message. It travels as two
//! query parameters, `expires=<unix seconds>&sig=<64 hex>`. `HEAD` is
//! checked as `GET`, so a redirect works for both.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Re-exported: signatures expire by it.
pub use crate::time::now_secs;

/// Query parameter carrying the expiry (Unix seconds).
pub const EXPIRES: &str = "expires";
/// Query parameter carrying the signature.
pub const SIG: &str = "sig";

/// Why a request's signature is refused (the volume answers `403`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this volume requires signed requests: the URL has no expires= and sig=")]
    Missing,
    #[error("the signed URL expired at {0} (Unix seconds); ask the master for a new one")]
    Expired(u64),
    #[error("the URL's signature does not match (tampered, or signed with another secret)")]
    Invalid,
}

/// Signs and checks URLs with one shared secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<secret>)")
    }
}

impl Signer {
    pub fn new(secret: &str) -> Signer {
        Signer {
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn mac(&self, method: &str, path: &str, params: &[(&str, &str)], expires: u64) -> Hmac<Sha256> {
        let method = if method.eq_ignore_ascii_case("HEAD") {
            "GET"
        } else {
            method
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        let mut field = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        field(method.to_ascii_uppercase().as_bytes());
        field(path.as_bytes());
        let mut sorted: Vec<&(&str, &str)> = params
            .iter()
            .filter(|(n, _)| *n != SIG && *n != EXPIRES)
            .collect();
        sorted.sort();
        for (name, value) in sorted {
            field(name.as_bytes());
            field(value.as_bytes());
        }
        field(expires.to_string().as_bytes());
        mac
    }

    /// The hex signature of a request.
    pub fn sign(&self, method: &str, path: &str, params: &[(&str, &str)], expires: u64) -> String {
        hex::encode(self.mac(method, path, params, expires).finalize().into_bytes())
    }

    /// Checks a request: `params` are all its decoded query parameters
    /// (including `expires` and `sig`), `now` is Unix seconds. The
    /// comparison is constant-time.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        now: u64,
    ) -> Result<(), SignatureError> {
        let get = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let (Some(expires), Some(sig)) = (get(EXPIRES), get(SIG)) else {
            return Err(SignatureError::Missing);
        };
        let expires: u64 = expires.parse().map_err(|_| SignatureError::Invalid)?;
        let sig = hex::decode(sig).map_err(|_| SignatureError::Invalid)?;
        self.mac(method, path, params, expires)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Invalid)?;
        if now > expires {
            return Err(SignatureError::Expired(expires));
        }
        Ok(())
    }
}

/// `http://<addr><path>?<params>` for a `method` request, with
/// `expires=` and `sig=` appended when `signer` is set (valid for `ttl`).
/// `path` is decoded (a key, or an operation like `/-/pull`).
pub fn url(
    signer: Option<&Signer>,
    ttl: std::time::Duration,
    method: &str,
    addr: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    use crate::key::{encode_path, encode_query_value};
    let mut url = format!("http://{addr}{}", encode_path(path));
    let mut query: Vec<String> = params
        .iter()
        .map(|(n, v)| format!("{n}={}", encode_query_value(v)))
        .collect();
    if let Some(signer) = signer {
        let expires = now_secs() + ttl.as_secs();
        query.push(format!("{EXPIRES}={expires}"));
        query.push(format!("{SIG}={}", signer.sign(method, path, params, expires)));
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden value: masters and volumes of different builds must agree.
    #[test]
    fn golden_signature() {
        let s = Signer::new("s3cret");
        assert_eq!(
            s.sign("GET", "/photos/a.jpg", &[], 1_700_000_000),
            GOLDEN_GET,
            "signature scheme changed"
        );
        assert_eq!(
            s.sign(
                "POST",
                "/-/pull",
                &[("key", "/a"), ("from", "h:1")],
                1_700_000_000
            ),
            s.sign(
                "POST",
                "/-/pull",
                &[("from", "h:1"), ("key", "/a")],
                1_700_000_000
            ),
            "parameter order does not matter"
        );
    }
    // Computed independently (Python hmac over the length-prefixed fields).
    const GOLDEN_GET: &str = "ee118d3ff67603c34afd4f3c39a9f1020f882a9c4e6051d6c2d38787f41e38fd";

    #[test]
    fn verifies_and_refuses() {
        let s = Signer::new("s3cret");
        let exp = 1000;
        let sig = s.sign("PUT", "/k", &[], exp);
        let exp_s = exp.to_string();
        let ok = [(EXPIRES, exp_s.as_str()), (SIG, sig.as_str())];
        assert_eq!(s.verify("PUT", "/k", &ok, 999), Ok(()));
        assert_eq!(
            s.verify("PUT", "/k", &ok, 1001),
            Err(SignatureError::Expired(1000))
        );
        assert_eq!(
            s.verify("DELETE", "/k", &ok, 999),
            Err(SignatureError::Invalid),
            "other method"
        );
        assert_eq!(
            s.verify("PUT", "/k2", &ok, 999),
            Err(SignatureError::Invalid),
            "other key"
        );
        assert_eq!(
            s.verify("PUT", "/k", &[(EXPIRES, "1001"), (SIG, sig.as_str())], 999),
            Err(SignatureError::Invalid),
            "other expiry"
        );
        assert_eq!(
            s.verify("PUT", "/k", &[(EXPIRES, "1000")], 999),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            s.verify("PUT", "/k", &[(EXPIRES, "1000"), (SIG, "zz")], 999),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            Signer::new("other").verify("PUT", "/k", &ok, 999),
            Err(SignatureError::Invalid)
        );
        // An extra parameter changes the request, so the signature fails.
        let extra = [(EXPIRES, exp_s.as_str()), (SIG, sig.as_str()), ("from", "evil:1")];
        assert_eq!(s.verify("PUT", "/k", &extra, 999), Err(SignatureError::Invalid));
        // A redirect signed for GET is good for HEAD.
        let g = s.sign("GET", "/k", &[], exp);
        assert_eq!(
            s.verify("HEAD", "/k", &[(EXPIRES, exp_s.as_str()), (SIG, g.as_str())], 999),
            Ok(())
        );
        // Length prefixes: moving bytes between fields changes the message.
        assert_ne!(
            s.sign("GET", "/ab", &[("c", "d")], 1),
            s.sign("GET", "/a", &[("bc", "d")], 1)
        );
    }
}
