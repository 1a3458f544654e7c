//! `/-/metrics` keeps every metric name the README documents: the names
//! are read from the README's `GET /-/metrics` rows (master, then volume)
//! and each must have a series in a real scrape.

use std::path::Path;
use trove_tests::{Cluster, ClusterOptions};

/// The metric names in the README's `GET /-/metrics` rows: the first
/// row is the master's, the second the volume's.
fn documented() -> (Vec<String>, Vec<String>) {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme).expect("the README");
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `GET /-/metrics` |"))
        .collect();
    assert_eq!(
        rows.len(),
        2,
        "the README has a metrics row for the master and one for the volume"
    );
    let names = |row: &str| -> Vec<String> {
        let names: Vec<String> = row
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|code| code.starts_with("trove_"))
            .map(|code| code.split('{').next().unwrap().to_string())
            .collect();
        assert!(names.len() >= 10, "few names found in {row}");
        names
    };
    (names(rows[0]), names(rows[1]))
}

/// The names of the samples in a scrape (labels and value stripped).
fn samples(scrape: &str) -> Vec<&str> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect()
}

fn assert_all_present(server: &str, scrape: &str, names: &[String]) {
    let samples = samples(scrape);
    for name in names {
        let found = samples.iter().any(|s| {
            *s == name
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| s.strip_suffix(suffix) == Some(name.as_str()))
        });
        assert!(
            found,
            "{server}: no series of the documented {name} in:\n{scrape}"
        );
    }
    assert_eq!(
        scrape.lines().last(),
        Some("# EOF"),
        "{server}: an OpenMetrics scrape ends in # EOF"
    );
}

#[tokio::test]
async fn every_documented_metric_is_scraped() {
    let (master_names, volume_names) = documented();
    let c = Cluster::start(ClusterOptions::default()).await;
    // Traffic, so that the request families have series.
    assert_eq!(c.put("/m/a", "value").await, 201);
    assert_eq!(c.get("/m/a").await.0, 200);

    let resp = c.http.get(c.url("/-/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        resp.headers()["content-type"]
    );
    let scrape = resp.text().await.unwrap();
    assert_all_present("master", &scrape, &master_names);

    let scrape = c.metrics_of(&c.volumes[0].addr).await;
    assert_all_present("volume", &scrape, &volume_names);
}

/// A chunked body (no `Content-Length`) is counted as it passes, in both
/// directions.
#[tokio::test]
async fn chunked_bodies_count_their_bytes() {
    let c = Cluster::start_default().await;
    let received = |c: &Cluster| {
        let (http, addr) = (c.http.clone(), c.master.addr.clone());
        async move { trove_tests::metric(&http, &addr, "trove_received_bytes_total").await }
    };
    let before = received(&c).await;
    let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![Ok(b"chunk one, "), Ok(b"chunk two")];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = c.http.put(c.url("/m/chunked")).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let after = received(&c).await;
    // Exactly: nothing else sends the master a body meanwhile, and a
    // byte counted twice (by two wrappers) would show.
    assert_eq!(
        after - before,
        20.0,
        "the master counted {} bytes of a 20-byte chunked body",
        after - before
    );
    // A volume's streamed answer is counted as sent.
    let volume = &c.volumes_of("/m/chunked").await[0];
    let sent_before = trove_tests::metric(&c.http, volume, "trove_sent_bytes_total").await;
    let location = format!("http://{volume}/-/blobs");
    let listing = c.http.get(location).send().await.unwrap().bytes().await.unwrap();
    assert!(!listing.is_empty(), "the listing names /m/chunked");
    let sent_after = trove_tests::metric(&c.http, volume, "trove_sent_bytes_total").await;
    assert!(
        sent_after - sent_before >= listing.len() as f64,
        "the volume counted {} bytes of a {}-byte streamed listing",
        sent_after - sent_before,
        listing.len()
    );
}

/// `--access-log` writes one line per request in the README's shape:
/// `remote=… method=… path=… status=… bytes=… ms=…`, with `bytes` the
/// answer's length (`-` for a streamed answer without one).
#[tokio::test]
async fn the_access_log_has_one_line_per_request_as_documented() {
    let c = Cluster::start(ClusterOptions {
        master_args: vec!["--access-log".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(c.put("/logged/k", "value").await, 201);
    assert_eq!(c.head("/logged/k").await.status(), 302);
    let log = c.master.log();
    let line = log
        .lines()
        .find(|l| l.contains("access:") && l.contains("method=HEAD") && l.contains("path=/logged/k"))
        .unwrap_or_else(|| panic!("no access line for the HEAD:\n{log}"));
    assert!(
        line.contains(" status=302 bytes=0 ms="),
        "not the documented shape: {line}"
    );
    assert!(line.contains("remote=127.0.0.1:"), "{line}");
}
