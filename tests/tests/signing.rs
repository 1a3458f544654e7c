//! `--secret`: the master signs redirects and its calls to volumes; volumes
//! refuse unsigned, tampered or expired requests with 403.

use trove_tests::{wait_for, Cluster, ClusterOptions};

const SECRET: &str = "correct horse battery staple";

async fn signed_cluster(master_extra: &[&str]) -> Cluster {
    let mut master_args = vec!["--secret".to_string(), SECRET.to_string()];
    master_args.extend(master_extra.iter().map(|s| s.to_string()));
    Cluster::start(ClusterOptions {
        master_args,
        volume_args: vec!["--secret".into(), SECRET.into()],
        ..Default::default()
    })
    .await
}

fn with_query(url: &str, f: impl Fn(&str, &str) -> Option<String>) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let pairs: Vec<String> = query
        .split('&')
        .filter_map(|p| {
            let (n, v) = p.split_once('=').unwrap();
            f(n, v).map(|v| format!("{n}={v}"))
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

#[tokio::test]
async fn signed_redirects_work_and_everything_else_is_refused() {
    let c = signed_cluster(&[]).await;
    assert_eq!(c.put("/secret/a", "alpha").await, 201);
    assert_eq!(c.put("/secret/b", "bravo").await, 201);
    let location = c.head("/secret/a").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        location.contains("expires=") && location.contains("&sig="),
        "{location}"
    );
    assert_eq!(c.get("/secret/a").await, (200, "alpha".into()));
    assert_eq!(
        c.http.head(&location).send().await.unwrap().status(),
        200,
        "a GET signature is good for HEAD"
    );

    let volume = location.split('?').next().unwrap().to_string();
    // Unsigned.
    let r = c.http.get(&volume).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("requires signed requests"));
    // Tampered signature, and a signature for another key.
    let flipped = with_query(&location, |n, v| {
        Some(if n == "sig" {
            // A different last character, whatever it was.
            let last = if v.ends_with('0') { '1' } else { '0' };
            format!("{}{last}", &v[..v.len() - 1])
        } else {
            v.to_string()
        })
    });
    assert_eq!(c.http.get(&flipped).send().await.unwrap().status(), 403);
    let other = location.replace("/secret/a?", "/secret/b?");
    assert_eq!(c.http.get(&other).send().await.unwrap().status(), 403);
    // A longer expiry with the old signature.
    let extended = with_query(&location, |n, v| {
        Some(if n == "expires" {
            "99999999999".into()
        } else {
            v.into()
        })
    });
    assert_eq!(c.http.get(&extended).send().await.unwrap().status(), 403);
    // A GET signature does not allow a DELETE or PUT.
    assert_eq!(c.http.delete(&location).send().await.unwrap().status(), 403);
    assert_eq!(
        c.http.put(&location).body("evil").send().await.unwrap().status(),
        403
    );
    assert_eq!(c.get("/secret/a").await, (200, "alpha".into()), "untouched");

    // Operations too; liveness stays open.
    let addr = &c.volumes[0].addr;
    for path in ["/-/blobs", "/-/status"] {
        assert_eq!(
            c.http
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            403,
            "{path}"
        );
    }
    let r = c
        .http
        .post(format!("http://{addr}/-/pull?key=/x&from=evil:1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        c.http
            .get(format!("http://{addr}/-/healthy"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn signed_urls_expire() {
    let c = signed_cluster(&["--url-ttl", "1s"]).await;
    assert_eq!(c.put("/ttl", "short-lived").await, 201);
    let location = c.head("/ttl").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(c.http.get(&location).send().await.unwrap().status(), 200);
    wait_for("the signed URL to expire", || async {
        c.http.get(&location).send().await.unwrap().status() == 403
    })
    .await;
    let r = c.http.get(&location).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("expired"));
    // A fresh redirect works again.
    assert_eq!(c.get("/ttl").await, (200, "short-lived".into()));
}

#[tokio::test]
async fn admin_jobs_and_rebuild_sign_their_calls() {
    let mut c = signed_cluster(&[]).await;
    for i in 0..10 {
        assert_eq!(c.put(&format!("/s/{i}"), format!("value {i}")).await, 201);
    }
    // Lose a replica; repair makes one volume pull from another, signed.
    let vols = c.head("/s/3").await.headers()["key-volumes"]
        .to_str()
        .unwrap()
        .to_string();
    let first = vols.split(',').next().unwrap();
    let path = c.blob_path(c.volume_index(first), "/s/3");
    c.remove_blob(c.volume_index(first), "/s/3");
    let (code, out) = c.admin(&["verify", "--deep", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 repaired"), "{out}");
    assert_eq!(std::fs::read(&path).unwrap(), b"value 3");

    // Rebuild needs the secret to list the volumes.
    c.master.kill();
    let db = c.dir.path().join("db2");
    let rebuild = |secret: Option<&str>| match secret {
        Some(s) => c.rebuild(&db, &["--secret", s]),
        None => c.rebuild(&db, &[]),
    };
    let out = rebuild(None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&db).ok();
    let out = rebuild(Some(SECRET));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10 live key(s)"));
}
