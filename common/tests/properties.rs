//! Property tests for everything in `trove-common` that takes untrusted
//! bytes (request paths, Range headers, stored records, signatures) and for
//! placement: no input makes them panic, and what they accept behaves.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use trove_common::key::{decode_prefix, encode_path, Key, KeyError, MAX_KEY_LEN};
use trove_common::placement::{parse_volume_list, Placement};
use trove_common::range::ByteRange;
use trove_common::record::{BlobMeta, Record};
use trove_common::signing::{Signer, EXPIRES, SIG};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any path either decodes to a key that obeys every rule and maps to
    /// a hash-named file, or is refused with a reason.
    #[test]
    fn any_path_is_a_valid_key_or_refused(path in "/[ -~\u{80}-\u{10FFFF}%]{0,64}") {
        // Refusals carry a reason (KeyError); what is accepted obeys every rule.
        if let Ok(key) = Key::from_path(&path) {
            let s = key.as_str();
            prop_assert!(s.starts_with('/') && s.len() <= MAX_KEY_LEN && s != "/");
            prop_assert!(!s.starts_with("/-/"));
            prop_assert!(!s.split('/').any(|seg| seg == "." || seg == ".."));
            let rel = key.blob_relpath();
            prop_assert_eq!(rel.components().count(), 3);
            prop_assert!(rel.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit() || b == b'/'));
            // The URL form decodes back to the same key.
            prop_assert_eq!(Key::from_path(&key.url_path()).unwrap(), key);
        }
    }

    /// Arbitrary bytes as a path never panic the decoder.
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = Key::from_path(&s);
        let _ = decode_prefix(&s);
    }

    /// Every valid key survives encoding into a URL.
    #[test]
    fn keys_round_trip_through_urls(key in "/[^/]{1,20}(/[^/]{1,20}){0,3}") {
        match Key::new(&key) {
            Ok(k) => {
                let decoded = Key::from_path(&encode_path(&key)).unwrap();
                prop_assert_eq!(decoded, k);
            }
            Err(e) => prop_assert!(matches!(e, KeyError::DotSegment | KeyError::Reserved), "{e}"),
        }
    }

    /// A Range header never panics, and a resolved range lies inside the value.
    #[test]
    fn ranges_resolve_inside_the_value(header in "bytes=[0-9-, ]{0,24}|[ -~]{0,24}", len in 0u64..10_000) {
        if let Ok(range) = ByteRange::parse(&header) {
            if let Ok(span) = range.resolve(len) {
                prop_assert!(span.start < span.end && span.end <= len, "{span:?} of {len}");
            }
        }
    }

    /// Stored records and sidecars: garbage is an error, never a panic.
    #[test]
    fn record_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Record::decode(&bytes);
        let _ = BlobMeta::decode(&bytes);
    }

    /// Signature checks never panic, and only the exact signed request passes.
    #[test]
    fn signatures_only_match_their_request(
        method in "GET|PUT|DELETE|POST",
        path in "/[a-z/]{0,16}",
        other in "/[a-z/]{0,16}",
        sig in "[0-9a-fA-Fz]{0,70}",
        expires in 0u64..u64::MAX,
    ) {
        let s = Signer::new("k");
        let e = expires.to_string();
        // A random signature is refused.
        prop_assert!(s.verify(&method, &path, &[(EXPIRES, e.as_str()), (SIG, sig.as_str())], 0).is_err());
        // The real one passes until it expires, and only for its own path.
        let good = s.sign(&method, &path, &[], expires);
        let params = [(EXPIRES, e.as_str()), (SIG, good.as_str())];
        prop_assert!(s.verify(&method, &path, &params, expires).is_ok());
        prop_assert_eq!(s.verify(&method, &other, &params, expires).is_ok(), other == path);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Placement is a function of (key, volume list): stable, distinct
    /// replicas, and independent of the order volumes are listed in.
    #[test]
    fn placement_is_stable_and_order_independent(key in proptest::collection::vec(any::<u8>(), 0..64), n in 3usize..9) {
        let list: Vec<String> = (0..n).map(|i| format!("10.1.0.{i}:3001")).collect();
        let a = Placement::new(parse_volume_list(&list.join(",")).unwrap(), 3).unwrap();
        let mut reversed = list.clone();
        reversed.reverse();
        let b = Placement::new(parse_volume_list(&reversed.join(",")).unwrap(), 3).unwrap();
        let home_a: Vec<String> = a.home(&key).iter().map(|v| v.addr.clone()).collect();
        let home_b: Vec<String> = b.home(&key).iter().map(|v| v.addr.clone()).collect();
        prop_assert_eq!(&home_a, &home_b);
        let mut dedup = home_a.clone();
        dedup.sort();
        dedup.dedup();
        prop_assert_eq!(dedup.len(), 3);
    }
}

/// Placement spreads keys evenly: over 30,000 random keys on 5 volumes,
/// each volume is the first choice for 20% ± 2%.
#[test]
fn placement_is_balanced() {
    let p = Placement::new(parse_volume_list("a:1,b:1,c:1,d:1,e:1").unwrap(), 1).unwrap();
    let mut counts = std::collections::HashMap::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..30_000 {
        let key = proptest::collection::vec(any::<u8>(), 1..40)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        *counts.entry(p.home(&key)[0].addr.clone()).or_insert(0usize) += 1;
    }
    for (addr, n) in counts {
        let share = n as f64 / 30_000.0;
        assert!((0.18..0.22).contains(&share), "{addr}: {share}");
    }
}
