//! Listings with a delimiter, `after` and `detail`, against a real master
//! and volumes: common prefixes, pages that split anywhere (every key and
//! every prefix seen exactly once), odd keys compared as raw bytes, and the
//! promise that a common prefix costs one index seek — counted through the
//! master's metrics, not timed.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use trove_common::key::{encode_path, encode_query_value};
use trove_tests::{md5_hex, metric, Cluster, ClusterOptions};

async fn cluster() -> Cluster {
    Cluster::start(ClusterOptions {
        master_args: vec!["--no-fsync".into()],
        volume_args: vec!["--no-fsync".into()],
        ..ClusterOptions::default()
    })
    .await
}

/// `GET <prefix>?list<query>`: status and JSON.
async fn list(c: &Cluster, prefix: &str, query: &str) -> (u16, Value) {
    let resp = c
        .http
        .get(c.url(&format!("{}?list{query}", encode_path(prefix))))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Writes each key with a small value of its own.
async fn put_keys(c: &Cluster, keys: &[&str]) {
    let values = keys
        .iter()
        .map(|k| (encode_path(k), format!("value of {k}").into_bytes()))
        .collect();
    c.put_all(values, 8).await;
}

fn q(v: &str) -> String {
    encode_query_value(v)
}

/// Keys a naive client gets wrong: spaces, `+`, `%`, unicode, a trailing
/// `/`, `a` beside `a/b`, and bytes on both sides of `/` (`.` is 0x2e,
/// `0` is 0x30), so that byte order — not "directory order" — decides.
const ODD: &[&str] = &[
    "/b/a",
    "/b/a/b",
    "/b/a/c/d",
    "/b/a.txt",
    "/b/a0",
    "/b/dir/",
    "/b/dir/inner",
    "/b/sp ace/x",
    "/b/plus+sign",
    "/b/per%cent",
    "/b/per%25/in",
    "/b/ünï/€",
    "/b/€uro",
    "/b/top",
    "/c/other",
];

#[tokio::test]
async fn delimiter_rolls_up_common_prefixes() {
    let c = cluster().await;
    put_keys(&c, ODD).await;

    let (status, page) = list(&c, "/b/", &format!("&delimiter={}", q("/"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({
            "next": "",
            "keys": ["/b/a", "/b/a.txt", "/b/a0", "/b/per%cent", "/b/plus+sign", "/b/top", "/b/€uro"],
            "prefixes": ["/b/a/", "/b/dir/", "/b/per%25/", "/b/sp ace/", "/b/ünï/"],
        })
    );
    // Inside a common prefix: the trailing-slash key is a key of its own.
    let (_, page) = list(&c, "/b/dir/", &format!("&delimiter={}", q("/"))).await;
    assert_eq!(
        page,
        json!({"next": "", "keys": ["/b/dir/", "/b/dir/inner"], "prefixes": []})
    );
    // A longer delimiter, and a prefix that is not at a `/`.
    let (_, page) = list(&c, "/b/a", &format!("&delimiter={}", q("/c"))).await;
    assert_eq!(
        page,
        json!({"next": "", "keys": ["/b/a", "/b/a.txt", "/b/a/b", "/b/a0"], "prefixes": ["/b/a/c"]})
    );
    let (_, page) = list(&c, "/b/", &format!("&delimiter={}", q("€"))).await;
    assert_eq!(page["prefixes"], json!(["/b/ünï/€", "/b/€"]));
    // Without a delimiter: every key, and no "prefixes" in the answer.
    let (_, page) = list(&c, "/b/", "").await;
    let all: Vec<&str> = ODD.iter().copied().filter(|k| k.starts_with("/b/")).collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(page, json!({"next": "", "keys": sorted}));

    // Unlinked keys are rolled up in their own listing, and leave this one.
    let unlink = reqwest::Method::from_bytes(b"UNLINK").unwrap();
    for k in ["/b/dir/", "/b/dir/inner", "/b/top"] {
        let r = c
            .http
            .request(unlink.clone(), c.url(&encode_path(k)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let (_, page) = list(&c, "/b/", &format!("&delimiter={}&limit=6", q("/"))).await;
    assert_eq!(
        page,
        json!({
            "next": "/b/plus+sign",
            "keys": ["/b/a", "/b/a.txt", "/b/a0", "/b/per%cent"],
            "prefixes": ["/b/a/", "/b/per%25/"],
        })
    );
    let url = c.url(&format!("/b/?unlinked&delimiter={}", q("/")));
    let unlinked: Value = c.http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        unlinked,
        json!({"next": "", "keys": ["/b/top"], "prefixes": ["/b/dir/"]})
    );
}

#[tokio::test]
async fn after_limit_zero_detail_and_refusals() {
    let c = cluster().await;
    put_keys(&c, ODD).await;
    let d = format!("&delimiter={}", q("/"));

    // limit=0: an empty page whose `next` is where the listing starts.
    let (status, page) = list(&c, "/b/", &format!("{d}&limit=0")).await;
    assert_eq!(status, 200);
    assert_eq!(page, json!({"next": "/b/a", "keys": [], "prefixes": []}));
    let (_, page) = list(&c, "/nothing/", &format!("{d}&limit=0")).await;
    assert_eq!(page, json!({"next": "", "keys": [], "prefixes": []}));

    // `after` is exclusive; naming a common prefix (or a key inside one)
    // skips all of it, as S3's markers do; `start` is inclusive.
    let (_, page) = list(&c, "/b/", &format!("{d}&after={}&limit=3", q("/b/a"))).await;
    assert_eq!(
        page,
        json!({"next": "/b/dir/", "keys": ["/b/a.txt", "/b/a0"], "prefixes": ["/b/a/"]})
    );
    for after in ["/b/a/", "/b/a/b", "/b/a/zzz"] {
        let (_, page) = list(&c, "/b/", &format!("{d}&after={}&limit=2", q(after))).await;
        assert_eq!(
            page,
            json!({"next": "/b/per%25/in", "keys": ["/b/a0"], "prefixes": ["/b/dir/"]}),
            "after {after}"
        );
    }
    let (_, page) = list(&c, "/b/", &format!("{d}&start={}&limit=2", q("/b/a/c/d"))).await;
    assert_eq!(
        page,
        json!({"next": "/b/dir/", "keys": ["/b/a0"], "prefixes": ["/b/a/"]})
    );
    // Odd keys round-trip as `after` and `start`.
    let (_, page) = list(&c, "/b/", &format!("&after={}&limit=1", q("/b/per%cent"))).await;
    assert_eq!(page, json!({"next": "/b/sp ace/x", "keys": ["/b/plus+sign"]}));
    let (_, page) = list(&c, "/b/", &format!("&start={}", q("/b/ünï/€"))).await;
    assert_eq!(page, json!({"next": "", "keys": ["/b/ünï/€", "/b/€uro"]}));

    // detail: one object per key (never per prefix), in the same order.
    let (_, page) = list(&c, "/b/", &format!("{d}&detail&limit=4")).await;
    assert_eq!(page["keys"], json!(["/b/a", "/b/a.txt", "/b/a0"]));
    assert_eq!(page["prefixes"], json!(["/b/a/"]));
    let objects = page["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 3);
    for (o, key) in objects.iter().zip(["/b/a", "/b/a.txt", "/b/a0"]) {
        let value = format!("value of {key}");
        assert_eq!(o["key"], key);
        assert_eq!(o["size"], value.len());
        assert_eq!(o["md5"], md5_hex(value.as_bytes()));
        assert_eq!(o["etag"], md5_hex(value.as_bytes()));
        let head = c.head(&encode_path(key)).await;
        assert_eq!(
            o["created"].to_string(),
            head.headers()["key-created"].to_str().unwrap()
        );
        assert!(o.get("expires").is_none());
    }
    let ttl = c
        .http
        .put(c.url("/ttl/k"))
        .header("Trove-Expires-After", "1h")
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(ttl.status(), 201);
    // Stored metadata: the content type, and the ETag given at write time.
    let typed = c
        .http
        .put(c.url("/ttl/typed"))
        .header("Content-Type", "image/png")
        .header("Trove-Etag", "abc-2")
        .body("png")
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status(), 201);
    let (_, page) = list(&c, "/ttl/", &format!("&detail&after={}", q("/ttl/k"))).await;
    assert_eq!(page["objects"][0]["content_type"], "image/png");
    assert_eq!(page["objects"][0]["etag"], "abc-2");
    assert_eq!(page["objects"][0]["md5"], md5_hex(b"png"));
    assert!(page["objects"][0]["write"].is_string());
    let (_, page) = list(&c, "/ttl/", "&detail&limit=1").await;
    assert!(
        page["objects"][0]["expires"].as_u64().unwrap() > page["objects"][0]["created"].as_u64().unwrap()
    );
    assert!(page.get("prefixes").is_none());

    // Mistakes are refused with a reason.
    for bad in [
        format!("&start={}&after={}", q("/b/a"), q("/b/b")),
        "&after=a&after=b".to_string(),
        "&delimiter=%2F&delimiter=%2F".to_string(),
        "&delimiter=%FF".to_string(),
        "&detail=maybe".to_string(),
        "&limit=-1".to_string(),
    ] {
        let (status, body) = list(&c, "/b/", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(!body.as_str().unwrap().trim().is_empty(), "{bad}");
    }
    let r = c
        .http
        .put(c.url("/b/?list&delimiter=%2F"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Pages of every size, split anywhere: following `next` (inclusive), or
/// the last entry as `after` (S3's markers), lists every key and every
/// common prefix exactly once, in byte order.
#[tokio::test]
async fn pages_see_every_entry_once() {
    let c = cluster().await;
    let mut keys: Vec<String> = ODD.iter().map(|k| k.to_string()).collect();
    for i in 0..12 {
        keys.push(format!("/b/many/{i:02}"));
        keys.push(format!("/b/k{i:02}"));
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    put_keys(&c, &refs).await;
    let d = format!("&delimiter={}", q("/"));
    let (_, whole) = list(&c, "/b/", &d).await;
    let expected_keys = whole["keys"].as_array().unwrap().clone();
    let expected_prefixes = whole["prefixes"].as_array().unwrap().clone();
    assert_eq!(expected_keys.len(), 7 + 12);
    assert_eq!(expected_prefixes.len(), 6, "{whole}");

    for limit in 1..=7 {
        for by_after in [false, true] {
            let (mut got_keys, mut got_prefixes) = (vec![], vec![]);
            let mut bound = String::new();
            let mut pages = 0;
            loop {
                let (status, page) = list(&c, "/b/", &format!("{d}&limit={limit}{bound}")).await;
                assert_eq!(status, 200);
                pages += 1;
                assert!(pages < 100, "paging does not end");
                let ks = page["keys"].as_array().unwrap();
                let ps = page["prefixes"].as_array().unwrap();
                assert!(ks.len() + ps.len() <= limit, "{page}");
                // The last entry of the page (keys and prefixes merged).
                let last = ks
                    .iter()
                    .chain(ps)
                    .filter_map(Value::as_str)
                    .max()
                    .map(str::to_string);
                got_keys.extend(ks.iter().cloned());
                got_prefixes.extend(ps.iter().cloned());
                let next = page["next"].as_str().unwrap();
                if next.is_empty() {
                    break;
                }
                bound = if by_after {
                    format!(
                        "&after={}",
                        q(&last.expect("a page before the end is never empty"))
                    )
                } else {
                    format!("&start={}", q(next))
                };
            }
            assert_eq!(got_keys, expected_keys, "limit {limit}, after: {by_after}");
            assert_eq!(
                got_prefixes, expected_prefixes,
                "limit {limit}, after: {by_after}"
            );
            let unique: BTreeSet<String> = got_prefixes.iter().map(|p| p.to_string()).collect();
            assert_eq!(unique.len(), got_prefixes.len());
        }
    }
}

/// The index seeks past a common prefix instead of walking its keys:
/// listing 10 prefixes of 40 keys each moves the index iterator about
/// twice per prefix (the master counts its moves in
/// `trove_listing_index_reads_total`), and a listing without a delimiter
/// moves it once per key. A count, not a timing.
#[tokio::test]
async fn a_common_prefix_costs_one_seek() {
    let c = cluster().await;
    const PREFIXES: usize = 10;
    const KEYS_EACH: usize = 40;
    let values = (0..PREFIXES)
        .flat_map(|p| (0..KEYS_EACH).map(move |i| (format!("/s/p{p}/k{i:03}"), vec![b'x'; 16])))
        .collect();
    c.put_all(values, 16).await;
    let reads = || metric(&c.http, &c.master.addr, "trove_listing_index_reads_total");

    let before = reads().await;
    let (_, page) = list(&c, "/s/", &format!("&delimiter={}", q("/"))).await;
    let used = reads().await - before;
    assert_eq!(page["prefixes"].as_array().unwrap().len(), PREFIXES);
    assert!(
        used <= (PREFIXES + 2) as f64,
        "{used} index reads for {PREFIXES} prefixes"
    );

    let before = reads().await;
    let (_, page) = list(&c, "/s/", "").await;
    let used = reads().await - before;
    assert_eq!(page["keys"].as_array().unwrap().len(), PREFIXES * KEYS_EACH);
    assert!(used >= (PREFIXES * KEYS_EACH) as f64, "{used}");
}

/// A prefix whose last segment is `.` or `..` names keys starting with a
/// dot; it cannot travel as a path (URL parsers collapse such segments), so
/// `prefix=` carries it, and trove-client always sends it that way.
#[tokio::test]
async fn a_prefix_ending_in_dot_segments_lists_only_what_starts_with_it() {
    let c = cluster().await;
    put_keys(
        &c,
        &["/dir/.env", "/dir/.git/config", "/dir/..two", "/dir/a", "/top"],
    )
    .await;
    let client = c.client();
    let keys = |prefix: &'static str, delimiter: Option<&'static str>| {
        let client = client.clone();
        async move {
            let opts = trove_client::ListOptions {
                delimiter: delimiter.map(str::to_string),
                ..Default::default()
            };
            let page = client.list_page(prefix, &opts).await.unwrap();
            (page.keys, page.prefixes)
        }
    };
    // Byte order: `.` (0x2e) sorts before `e` and `g`.
    assert_eq!(
        keys("/dir/.", None).await.0,
        ["/dir/..two", "/dir/.env", "/dir/.git/config"]
    );
    assert_eq!(keys("/dir/..", None).await.0, ["/dir/..two"]);
    assert_eq!(
        keys("/dir/.", Some("/")).await,
        (
            vec!["/dir/..two".to_string(), "/dir/.env".to_string()],
            vec!["/dir/.git/".to_string()]
        )
    );
    for nothing in ["/.", "/..", "/dir/./a"] {
        assert_eq!(keys(nothing, None).await, (vec![], vec![]), "{nothing}");
    }
    // By hand: the parameter on `GET /`, and refused beside another path.
    let (status, page) = list(&c, "/", &format!("&prefix={}", q("/dir/.e"))).await;
    assert_eq!((status, &page["keys"]), (200, &json!(["/dir/.env"])));
    let (status, answer) = list(&c, "/dir/", &format!("&prefix={}", q("/dir/."))).await;
    assert_eq!(status, 400, "{answer}");
    // A prefix not from the root is refused naming the parameter.
    let (status, answer) = list(&c, "/", "&prefix=dir/").await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("prefix="), "{answer}");
}
