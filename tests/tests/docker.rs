//! The README's guarantees across a real network: a master and volumes in
//! their own containers on a private Docker network, made and grown by
//! `docker.sh`, each case under a bounded load of writers and readers whose
//! every request the checker keeps ([`History`]), and faults done the way
//! they happen to hosts: a partition (`docker network disconnect`), a
//! freeze (`docker pause`), a dead host and its disk replaced, restarts, the
//! index lost, the cluster grown, and signed URLs.
//!
//! Every test is `#[ignore]`d: it needs the Docker engine and the image.
//! `scripts/test.sh` builds the image (`./docker.sh build`) and runs them
//! (`--run-ignored only`) when `docker info` answers; under CI a
//! missing engine fails there. Each cluster has its own project name and is
//! removed when its test ends, passed or failed.

use std::time::Duration;
use trove_tests::docker::workload::{Client, History, LoadOptions, Outcome, Served, Workload};
use trove_tests::docker::{docker, wait_healthy, DockerCluster, Options, STALL};
use trove_tests::wait_for;

fn client(c: &DockerCluster) -> Client {
    Client {
        http: c.http.clone(),
        master: c.master_url(),
    }
}

fn load(c: &DockerCluster, prefix: &str) -> Workload {
    Workload::start(&client(c), prefix, LoadOptions::default())
}

/// A default cluster (3 volumes, 2 replicas) under load, with the first
/// writes acknowledged: where most cases start their fault.
async fn cluster_under_load(prefix: &str) -> (DockerCluster, Workload) {
    let c = DockerCluster::up(Options::default()).await;
    let load = load(&c, prefix);
    load.wait_acked(10).await;
    (c, load)
}

/// Stops the load, checks it, and checks that the end state reads back.
async fn finish(c: &DockerCluster, load: Workload, lost_acks_ok: bool) -> History {
    let history = load.stop().await;
    history.assert_clean();
    history.assert_readable(&client(c), lost_acks_ok).await;
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn partitioned_volume() {
    let (c, load) = cluster_under_load("/part").await;
    c.docker(&["network", "disconnect", &c.network(), &c.volume(2)])
        .await;
    // The master reports it down, and writes go on with the other two.
    c.wait_volume_health(2, false).await;
    load.wait_more_acked(10).await;
    c.docker(&["network", "connect", &c.network(), &c.volume(2)])
        .await;
    c.wait_volume_health(2, true).await;
    load.wait_more_acked(4).await;
    finish(&c, load, false).await;

    // Writes made while it was cut off are on the other two; rebalance
    // moves them home.
    let unbalanced = c.unbalanced("/part").await;
    assert!(unbalanced > 0, "no key was written during the partition");
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        c.unbalanced("/part").await,
        0,
        "rebalance left keys away from home"
    );
    eprintln!("rebalance moved {unbalanced} keys home");
    c.heal_and_check("/part").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn frozen_volume() {
    let (c, load) = cluster_under_load("/frozen").await;
    // The master takes a frozen volume for healthy until a call to it has
    // stalled for the stall timeout, so a write placed on it right after
    // the freeze fails after that timeout — bounded — and the same write,
    // retried, lands on the other two.
    let key = key_placed_on(&c, 2, "/frozen/probe").await;
    let client = client(&c);
    docker(&["pause", &c.volume(2)]).await;
    let first = client.put(&key, vec![1u8; 100_000]).await;
    assert!(
        matches!(first, Outcome::Status(s) if s >= 500),
        "a write to the frozen volume got {first:?}"
    );
    wait_for("the retried write to land", || async {
        client.put(&key, vec![1u8; 100_000]).await == Outcome::Status(201)
    })
    .await;
    let (_, volumes, _) = c.head(&key).await;
    assert!(!volumes.contains(&c.volume_addr(2)), "{key} is on {volumes:?}");
    c.wait_volume_health(2, false).await;
    load.wait_more_acked(10).await;
    // Frozen for longer than the stall timeout, whatever the pace so far.
    tokio::time::sleep(STALL * 2).await;
    c.docker(&["unpause", &c.volume(2)]).await;
    c.wait_volume_health(2, true).await;
    load.wait_more_acked(4).await;
    let history = finish(&c, load, false).await;
    // A refused write was retried until it landed.
    let acked = history.acknowledged();
    for w in history.refused_writes() {
        assert!(acked.contains_key(&w.key), "{} was never written: {w:?}", w.key);
    }
    c.heal_and_check("/frozen").await;
}

/// A key whose placement puts a replica on volume `i` (which the master
/// may not know is frozen yet).
async fn key_placed_on(c: &DockerCluster, i: usize, prefix: &str) -> String {
    let list: Vec<String> = (1..=c.volume_count().await).map(|v| c.volume_addr(v)).collect();
    let placement = trove_common::placement::Placement::new(
        trove_common::placement::parse_volume_list(&list.join(",")).unwrap(),
        c.replicas,
    )
    .unwrap();
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|k| {
            placement
                .home(k.as_bytes())
                .iter()
                .any(|v| v.addr == c.volume_addr(i))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn killed_volume_with_its_disk_replaced() {
    let c = DockerCluster::up(Options::default()).await;
    let load = load(&c, "/disk");
    load.wait_acked(20).await;
    let before_kill = load.acked_keys();
    c.docker(&["kill", &c.volume(2)]).await;
    c.wait_volume_health(2, false).await;
    load.wait_more_acked(8).await;
    // The host's disk is gone: a new, empty one under the same name.
    c.docker(&["rm", &c.volume(2)]).await;
    c.docker(&["volume", "rm", &c.name("vol2-data")]).await;
    let (code, out) = c.docker_sh(&["up"]).await;
    assert_eq!(code, 0, "{out}");
    c.wait_volume_health(2, true).await;
    // The master sees a new disk (its volume-id) and keeps readers of older
    // keys away from it until a repair.
    let lost = c.volume_status(2).await.unwrap()["lost_data_at"].clone();
    assert!(lost.is_u64(), "lost_data_at: {lost}");
    // New writes may land on it already; none of the old keys is there.
    let on_new_disk = c.blobs(2).await;
    assert!(
        on_new_disk
            .iter()
            .all(|b| !before_kill.iter().any(|k| b["key"] == k.as_str())),
        "the new disk holds keys written before the kill"
    );
    load.wait_more_acked(4).await;
    finish(&c, load, false).await;

    let (code, out) = c.admin(&["verify"]).await;
    assert_eq!(code, 1, "verify must find the lost replicas: {out}");
    let (code, out) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    wait_for("the master to trust the repaired volume again", || async {
        c.volume_status(2)
            .await
            .is_some_and(|v| v["lost_data_at"].is_null())
    })
    .await;
    // heal_and_check: every key on exactly the volumes its record names,
    // the replaced one included.
    c.heal_and_check("/disk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn rolling_restart_of_every_volume() {
    let (c, load) = cluster_under_load("/roll").await;
    for i in 1..=3 {
        c.docker(&["restart", "-t", "10", &c.volume(i)]).await;
        c.wait_volume_health(i, true).await;
        load.wait_more_acked(4).await;
    }
    // assert_clean: zero failed reads of acknowledged keys throughout.
    finish(&c, load, false).await;
    c.heal_and_check("/roll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn master_restarted_then_lost() {
    let (c, load) = cluster_under_load("/index").await;
    c.docker(&["stop", "-t", "10", &c.name("master")]).await;
    c.docker(&["start", &c.name("master")]).await;
    c.wait_all_healthy().await;
    load.wait_more_acked(8).await;
    // Readers asked again while the master was away; every key written
    // before the restart is still there: the index is on its volume.
    let history = finish(&c, load, true).await;

    // Some keys are deleted before the index is lost: they must stay gone.
    let client = client(&c);
    let mut deleted = Vec::new();
    for key in history.acknowledged().keys().take(5) {
        let url = format!("{}{key}", c.master_url());
        assert_eq!(c.http.delete(&url).send().await.unwrap().status(), 204, "{key}");
        deleted.push(key.clone());
    }
    c.docker(&["rm", "-f", &c.name("master")]).await;
    c.docker(&["volume", "rm", &c.name("index")]).await;
    let (code, out) = c.docker_sh(&["rebuild"]).await;
    assert_eq!(code, 0, "{out}");
    c.wait_all_healthy().await;
    for key in &deleted {
        assert_eq!(client.read(key).await.served, Served::Absent, "{key} came back");
    }
    for (key, sha) in history.acknowledged() {
        if !deleted.contains(&key) {
            assert_eq!(
                client.read(&key).await.served,
                Served::Bytes(sha),
                "{key} after rebuild"
            );
        }
    }
    c.heal_and_check("/index").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn grow_by_one_volume() {
    let c = DockerCluster::up(Options::default()).await;
    // The writers write a fixed set of keys first, so that the bytes moved
    // can be set against a known total; the readers read on through the
    // growth (the master restarts with the new volume list).
    let opts = LoadOptions {
        per_writer: 20,
        ..Default::default()
    };
    let load = Workload::start(&client(&c), "/grow", opts);
    load.wait_writers_done().await;
    let before: u64 = stored_bytes(&c, 3).await;
    let reads_before = load.reads();
    let (code, out) = c.docker_sh(&["add-volume"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(c.volume_count().await, 4);
    wait_for("reads after the growth", || async {
        load.reads() > reads_before + 20
    })
    .await;
    finish(&c, load, false).await;

    // With 2 replicas, the new volume enters a key's top two for half of
    // the keys, taking one of its two copies: 1/4 of the stored bytes.
    // The bounds are wide (sizes and keys are random); what matters is
    // that it is neither nothing nor everything.
    let report = c.json("/-/rebalance").await;
    let moved = report["bytes"].as_u64().unwrap();
    let expected = before as f64 / 4.0;
    eprintln!(
        "stored before: {before} bytes; moved by the rebalance: {moved} ({:.3} of it; 1/(N+1) = 0.25)",
        moved as f64 / before as f64
    );
    assert!(
        moved as f64 > expected * 0.5 && (moved as f64) < expected * 1.6,
        "{moved} bytes moved, about {expected} expected"
    );
    // The new volume holds about its share, and everything is home.
    let on_new: u64 = c.blobs(4).await.iter().map(|b| b["size"].as_u64().unwrap()).sum();
    assert!(on_new > 0, "nothing on the new volume");
    assert_eq!(c.unbalanced("/grow").await, 0);
    c.heal_and_check("/grow").await;
}

/// Bytes of every blob on volumes 1..=n.
async fn stored_bytes(c: &DockerCluster, n: usize) -> u64 {
    let mut total = 0;
    for i in 1..=n {
        total += c
            .blobs(i)
            .await
            .iter()
            .map(|b| b["size"].as_u64().unwrap())
            .sum::<u64>();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn signed_urls_on_the_whole_cluster() {
    let secret = format!("s3cret-{}", rand::random::<u64>());
    let c = DockerCluster::up(Options {
        secret: Some(secret.clone()),
        ..Default::default()
    })
    .await;
    let load = load(&c, "/signed");
    load.wait_acked(10).await;
    let history = load.stop().await;
    history.assert_clean();

    let key = history.acknowledged().into_keys().next().unwrap();
    let url = c.url(&key);
    let r = c.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("sig="), "{location}");
    let bare = location.split('?').next().unwrap().to_string();
    let status = |u: String| {
        let http = c.http.clone();
        async move { http.get(u).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(location.clone()).await, 200, "the master's redirect");
    assert_eq!(status(bare.clone()).await, 403, "no signature");
    let tampered = format!(
        "{}{}",
        &location[..location.len() - 1],
        if location.ends_with('0') { '1' } else { '0' }
    );
    assert_eq!(status(tampered).await, 403, "a tampered signature");
    let foreign = trove_common::signing::url(
        Some(&trove_common::signing::Signer::new("another secret")),
        Duration::from_secs(60),
        "GET",
        bare.trim_start_matches("http://").split('/').next().unwrap(),
        &key,
        &[],
    );
    assert_eq!(status(foreign).await, 403, "signed with another secret");
    let put = c.http.put(&bare).body("forged").send().await.unwrap();
    assert_eq!(put.status(), 403, "an unsigned write to a volume");
    // Admin jobs (run by docker.sh in their own container) and rebuild's
    // listings are signed with the secret docker.sh found on the cluster.
    history.assert_readable(&client(&c), false).await;
    c.heal_and_check("/signed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn image_and_published_ports() {
    let c = DockerCluster::up(Options::default()).await;
    let image = docker(&[
        "container",
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &c.name("master"),
    ])
    .await;
    let image = image.trim();
    let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", image])
        .await
        .trim()
        .parse()
        .unwrap();
    eprintln!("{image}: {} MB", size / 1_000_000);
    assert!(size < 200_000_000, "{image} is {size} bytes");
    // Not root: the image's user, and the servers' processes.
    let user = docker(&["image", "inspect", "-f", "{{.Config.User}}", image]).await;
    assert_eq!(user.trim(), "10001:10001");
    let uids = docker(&["top", &c.name("master"), "-o", "pid,uid"]).await;
    let uids: Vec<&str> = uids
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(!uids.is_empty() && uids.iter().all(|u| *u == "10001"), "{uids:?}");
    for bin in ["trove-master", "trove-volume"] {
        let help = docker(&["run", "--rm", image, bin, "--help"]).await;
        assert!(help.contains("Usage"), "{bin} --help: {help}");
    }
    // The health checks use the binary itself, and Docker sees them pass.
    wait_healthy(&c.name("master")).await;
    // The master is published on 127.0.0.1 only, and answers there.
    let published = c.published_master().await;
    assert!(published.starts_with("127.0.0.1:"), "{published}");
    let r = trove_tests::no_redirects()
        .get(format!("http://{published}/-/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A short load through the containers, so that this case too is
    // checked end to end.
    let load = load(&c, "/image");
    load.wait_acked(8).await;
    finish(&c, load, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn compose_file() {
    trove_tests::docker::require_docker().await;
    let c = trove_tests::docker::compose::ComposeCluster::up().await;
    let published = c.published_master().await;
    assert!(published.starts_with("127.0.0.1:"), "{published}");
    // Through the published port; redirects name the services (vol1…).
    let client = Client {
        http: c.http.clone(),
        master: format!("http://{published}"),
    };
    let load = Workload::start(
        &client,
        "/compose",
        LoadOptions {
            per_writer: 5,
            ..Default::default()
        },
    );
    load.wait_writers_done().await;
    let history = load.stop().await;
    history.assert_clean();
    history.assert_readable(&client, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image: scripts/test.sh runs it"]
async fn s3_gateway_container() {
    use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
    let c = DockerCluster::up(Options::default()).await;
    let gw = c.name("s3");
    // The keys docker.sh made up, from the container's environment.
    let env = docker(&[
        "container",
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &gw,
    ])
    .await;
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{gw} has no {name} in its environment"))
    };
    let creds = Credentials::new(var("TROVE_S3_ACCESS_KEY"), var("TROVE_S3_SECRET_KEY"));
    let published = docker(&["port", &gw, "9000/tcp"]).await;
    let addr = published
        .lines()
        .next()
        .expect("a published port")
        .trim()
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let base = format!("http://{addr}");
    let http = trove_tests::no_redirects();
    let healthy = http.get(format!("{base}/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200, "the unauthenticated health check");
    let unsigned = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(unsigned.status(), 403, "an unsigned ListBuckets");
    assert!(unsigned.text().await.unwrap().contains("AccessDenied"));

    // Signed requests (presigned URLs): a bucket, an object in and out.
    let valid = Duration::from_secs(600);
    let bucket = Bucket::new(base.parse().unwrap(), UrlStyle::Path, "docker-s3", "us-east-1").unwrap();
    let r = http
        .put(bucket.create_bucket(&creds).sign(valid).as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "CreateBucket: {}", r.text().await.unwrap());
    let value = "through the gateway's container";
    let r = http
        .put(bucket.put_object(Some(&creds), "hello.txt").sign(valid).as_str())
        .body(value)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "PutObject: {}", r.text().await.unwrap());
    let r = http
        .get(bucket.get_object(Some(&creds), "hello.txt").sign(valid).as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), value);
    // The same object is the Trove key /docker-s3/hello.txt on the master.
    let (status, _, _) = c.head("/docker-s3/hello.txt").await;
    assert_eq!(status, 302, "the object is a key on the master");
}
