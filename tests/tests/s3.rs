//! The S3 gateway under the clients people use: aws-cli, boto3 (the pytest
//! suite in `tests/s3/`), rclone and s3cmd, each run as a real process
//! against a fresh cluster (a master, 3 volumes, 2 replicas) and a
//! `trove-s3` gateway in front of it; plus the two ways into one namespace
//! (an object written through S3 read by a plain HTTP GET through the
//! master, a key written with a plain PUT listed by `aws s3 ls`), and the
//! gateway's peak memory while four clients move 1 GiB each.
//!
//! Each test has a cluster of its own (starting one takes well under a
//! second), so nextest runs them side by side and one test's leftovers
//! never change another's listings.
//!
//! The clients come from `scripts/s3-clients.sh` (which `scripts/test.sh`
//! runs): a venv (`$TROVE_S3_VENV`, default `~/.cache/trove-venv`) with
//! aws-cli, boto3, s3cmd and pytest, and rclone on `PATH`. When they are
//! missing, each test says so and passes without checking anything, except
//! under CI (`CI=true`), where that is a failure.
//!
//! Clients run with their retries off (aws-cli `AWS_MAX_ATTEMPTS=1`, rclone
//! `--retries 1 --low-level-retries 1`, s3cmd `max_retries = 0`), so that a
//! request the gateway fails is seen, not papered over.

use futures::StreamExt;
use md5::{Digest as _, Md5};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;
use trove_tests::{
    md5_hex, pattern, pattern_bytes, sha256_hex, tools, Cluster, ClusterOptions, Gateway, S3_ACCESS_KEY,
    S3_SECRET_KEY,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// aws-cli's default multipart threshold and part size.
const AWSCLI_PART: u64 = 8 * MIB;
/// The most the gateway may keep resident, whatever it moves.
const GATEWAY_PEAK_RSS_LIMIT: u64 = 64 * MIB;
/// How long one client command may take (most take a second or two).
const CLIENT_LIMIT: Duration = Duration::from_secs(180);
/// How long a command moving a GiB may take.
const BIG_LIMIT: Duration = Duration::from_secs(600);

/// Where the installed clients are.
struct Clients {
    /// The venv's `bin/`: `aws`, `python`, `s3cmd`.
    venv_bin: PathBuf,
    rclone: PathBuf,
}

impl Clients {
    /// The clients, or `None` (after saying so) when some are missing
    /// outside CI. Under CI a missing client is a failure.
    fn find() -> Option<Clients> {
        let venv_bin = tools::venv_bin("TROVE_S3_VENV", "trove-venv");
        let needs = tools::Needs {
            suite: "the S3 suite",
            installer: "scripts/s3-clients.sh",
            venv_bin: &venv_bin,
            in_venv: &["aws", "python", "s3cmd"],
            on_path: &["rclone"],
        };
        if !needs.present() {
            return None;
        }
        let rclone = tools::on_path("rclone").expect("present");
        Some(Clients { venv_bin, rclone })
    }
}

/// What a client command left behind.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// A cluster, a gateway in front of it, the clients aimed at the gateway,
/// and a scratch folder for the files they move. Dropped in field order:
/// the gateway stops before the cluster and its temp dir go.
struct S3 {
    clients: Clients,
    gateway: Gateway,
    cluster: Cluster,
    /// Scratch files (in the cluster's temp dir).
    work: PathBuf,
}

impl S3 {
    async fn start() -> Option<S3> {
        S3::start_with_replicas(2).await
    }

    /// [`S3::start`] with three volumes and `replicas` replicas.
    async fn start_with_replicas(replicas: usize) -> Option<S3> {
        let clients = Clients::find()?;
        // Durability is tested elsewhere; these tests check what S3
        // clients see, and skipping fsync keeps them quick on 2 cores.
        let cluster = Cluster::start(ClusterOptions {
            volumes: 3,
            replicas,
            master_args: vec!["--no-fsync".into()],
            volume_args: vec!["--no-fsync".into()],
        })
        .await;
        let gateway = Gateway::start(&cluster, &[]).await;
        let work = cluster.dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let s3 = S3 {
            clients,
            gateway,
            cluster,
            work,
        };
        s3.write_client_configs();
        Some(s3)
    }

    /// The config files of aws-cli, rclone (none: it is configured by
    /// environment variables) and s3cmd, in the scratch folder.
    fn write_client_configs(&self) {
        std::fs::write(
            self.work.join("aws-config"),
            "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n",
        )
        .unwrap();
        std::fs::write(self.work.join("rclone.conf"), "").unwrap();
        let host = &self.gateway.server.addr;
        std::fs::write(
            self.work.join("s3cfg"),
            format!(
                "[default]\naccess_key = {S3_ACCESS_KEY}\nsecret_key = {S3_SECRET_KEY}\n\
                 host_base = {host}\nhost_bucket = {host}\nuse_https = False\n\
                 signature_v2 = False\nbucket_location = us-east-1\nmax_retries = 0\n\
                 progress_meter = False\n"
            ),
        )
        .unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// Points a command's AWS SDK settings at the gateway's keys and our
    /// config only: nothing from the user's environment or `~/.aws`.
    fn aws_env(&self, cmd: &mut Command) {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", self.path("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path("no-aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_RETRY_MODE", "standard")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
    }

    /// `aws --endpoint-url <gateway> <args>`.
    fn aws(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.clients.venv_bin.join("aws"));
        cmd.arg("--endpoint-url").arg(self.gateway.endpoint()).args(args);
        self.aws_env(&mut cmd);
        cmd
    }

    /// Runs `aws <args>`, which must succeed; its stdout.
    async fn aws_ok(&self, args: &[&str]) -> String {
        self.ok(self.aws(args), CLIENT_LIMIT).await
    }

    /// Runs `aws <args> --output json`, which must succeed; its answer.
    async fn aws_json(&self, args: &[&str]) -> Value {
        let mut cmd = self.aws(args);
        cmd.args(["--output", "json"]);
        let out = self.ok(cmd, CLIENT_LIMIT).await;
        if out.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("aws printed no JSON ({e}): {out}"))
    }

    /// `rclone <args>` with a remote `trove:` for the gateway, set by
    /// environment variables (provider Other, path style).
    fn rclone(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.clients.rclone);
        // rclone's AWS SDK reads AWS_* too (AWS_CA_BUNDLE, AWS_PROFILE…).
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("RCLONE_") || name_text.starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("RCLONE_CONFIG", self.path("rclone.conf"))
            .env("RCLONE_CONFIG_TROVE_TYPE", "s3")
            .env("RCLONE_CONFIG_TROVE_PROVIDER", "Other")
            .env("RCLONE_CONFIG_TROVE_ENV_AUTH", "false")
            .env("RCLONE_CONFIG_TROVE_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("RCLONE_CONFIG_TROVE_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .env("RCLONE_CONFIG_TROVE_ENDPOINT", self.gateway.endpoint())
            .env("RCLONE_CONFIG_TROVE_REGION", "us-east-1")
            .env("RCLONE_CONFIG_TROVE_FORCE_PATH_STYLE", "true")
            .args(["--retries", "1", "--low-level-retries", "1"])
            .args(args);
        cmd
    }

    /// `s3cmd -c <our s3cfg> <args>`.
    fn s3cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.clients.venv_bin.join("s3cmd"));
        cmd.arg("-c").arg(self.path("s3cfg")).args(args);
        cmd.env("PYTHONDONTWRITEBYTECODE", "1");
        cmd
    }

    /// Runs a client command to its end (killed after `limit`).
    async fn run(&self, mut cmd: Command, limit: Duration) -> Run {
        let shown = describe(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let out = match tokio::time::timeout(limit, cmd.output()).await {
            Ok(out) => out.unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}")),
            Err(_) => panic!(
                "`{shown}` did not finish within {limit:?}; the gateway's log ends:\n{}",
                self.gateway.log_tail(40)
            ),
        };
        let run = Run {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "$ {shown} → {} in {:.1?}\n{}",
            out.status,
            started.elapsed(),
            run.stderr.trim_end()
        );
        run
    }

    /// Runs a client command that must succeed; its stdout.
    async fn ok(&self, cmd: Command, limit: Duration) -> String {
        let shown = describe(&cmd);
        let run = self.run(cmd, limit).await;
        assert!(
            run.success,
            "`{shown}` failed\n--- stdout\n{}\n--- stderr\n{}\n--- the gateway's log ends\n{}",
            run.stdout,
            run.stderr,
            self.gateway.log_tail(40)
        );
        run.stdout
    }

    /// `HEAD key` through the master: (Key-Size, Key-Sha256).
    async fn master_view(&self, key: &str) -> (u64, String) {
        let head = self.cluster.head(key).await;
        assert_eq!(head.status(), 302, "HEAD {key} through the master");
        let header = |name: &str| head.headers()[name].to_str().unwrap().to_string();
        (header("key-size").parse().unwrap(), header("key-sha256"))
    }
}

/// A command as a person would type it (program name and arguments).
fn describe(cmd: &Command) -> String {
    let std = cmd.as_std();
    let program = Path::new(std.get_program())
        .file_name()
        .map_or_else(|| std.get_program().to_string_lossy(), |n| n.to_string_lossy());
    let args: Vec<_> = std.get_args().map(|a| a.to_string_lossy()).collect();
    format!("{program} {}", args.join(" "))
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A big file of seeded pseudo-random bytes (fast, and not sparse).
struct BigFile {
    sha256: String,
    /// The md5 of each `part`-sized piece, for multipart ETags.
    part_md5s: Vec<[u8; 16]>,
}

/// Writes `size` pattern bytes from `seed` to `path`.
async fn write_big_file(path: &Path, size: u64, seed: u64, part: u64) -> BigFile {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (stream, _) = pattern(size, seed);
        let mut file = std::io::BufWriter::with_capacity(MIB as usize, std::fs::File::create(&path).unwrap());
        let mut sha = Sha256::new();
        let mut md5 = Md5::new();
        let mut in_part = 0u64;
        let mut part_md5s = vec![];
        for chunk in futures::executor::block_on_stream(stream) {
            let mut chunk = &chunk.unwrap()[..];
            file.write_all(chunk).unwrap();
            sha2::Digest::update(&mut sha, chunk);
            while !chunk.is_empty() {
                let n = chunk.len().min((part - in_part) as usize);
                md5.update(&chunk[..n]);
                in_part += n as u64;
                chunk = &chunk[n..];
                if in_part == part {
                    part_md5s.push(md5.finalize_reset().into());
                    in_part = 0;
                }
            }
        }
        if in_part > 0 {
            part_md5s.push(md5.finalize().into());
        }
        file.flush().unwrap();
        BigFile {
            sha256: hex::encode(sha2::Digest::finalize(sha)),
            part_md5s,
        }
    })
    .await
    .unwrap()
}

/// The hex sha256 of a file, read in 1 MiB pieces.
async fn file_sha256(path: &Path) -> String {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; MIB as usize];
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut sha, &buf[..n]);
        }
        hex::encode(sha2::Digest::finalize(sha))
    })
    .await
    .unwrap()
}

/// The quoted ETag S3 gives a multipart object: md5 of the concatenated
/// binary md5s of its parts, `-`, the number of parts.
fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut md5 = Md5::new();
    for d in part_md5s {
        md5.update(d);
    }
    format!("\"{}-{}\"", hex::encode(md5.finalize()), part_md5s.len())
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

/// Every file under `root`: relative path → sha256.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, sha256_hex(&std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Writes `files` (relative path, bytes) under `root`.
fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, bytes) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// Lines of a client's output that begin with `verb` (`upload:`, …).
fn lines_starting(out: &str, verb: &str) -> usize {
    out.lines().filter(|l| l.trim_start().starts_with(verb)).count()
}

/// `aws s3 ls` lines (`2026-01-01 00:00:00       1234 key`): key → size.
fn parse_ls(out: &str) -> BTreeMap<String, u64> {
    out.lines()
        .filter(|l| !l.trim_start().starts_with("PRE "))
        .filter_map(|l| {
            let rest = l.get(19..)?.trim_start();
            let (size, key) = rest.split_once(' ')?;
            Some((key.to_string(), size.parse().ok()?))
        })
        .collect()
}

// --- aws-cli -------------------------------------------------------------------

#[tokio::test]
async fn awscli_cp_of_one_gib_goes_multipart_and_comes_back_byte_identical() {
    let Some(s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://big"]).await;
    let source = s3.path("one-gib");
    let file = write_big_file(&source, GIB, 1, AWSCLI_PART).await;

    s3.ok(
        s3.aws(&["s3", "cp", "--no-progress", arg(&source), "s3://big/one-gib"]),
        BIG_LIMIT,
    )
    .await;
    // Default chunking: 128 parts of 8 MiB, so the multipart ETag.
    let head = s3
        .aws_json(&["s3api", "head-object", "--bucket", "big", "--key", "one-gib"])
        .await;
    assert_eq!(head["ContentLength"], GIB);
    assert_eq!(
        head["ETag"],
        multipart_etag(&file.part_md5s),
        "the multipart ETag of 128 parts"
    );
    // The completed object is an ordinary Trove value.
    assert_eq!(s3.master_view("/big/one-gib").await, (GIB, file.sha256.clone()));

    let down = s3.path("one-gib.down");
    s3.ok(
        s3.aws(&["s3", "cp", "--no-progress", "s3://big/one-gib", arg(&down)]),
        BIG_LIMIT,
    )
    .await;
    assert_eq!(std::fs::metadata(&down).unwrap().len(), GIB);
    assert_eq!(file_sha256(&down).await, file.sha256, "downloaded bytes differ");
}

/// 200 files in nested folders: sizes from 0 to ~70 KB, some names with
/// spaces.
fn sync_tree() -> Vec<(String, Vec<u8>)> {
    (0..200u64)
        .map(|i| {
            let name = if i % 40 == 7 {
                format!("d{}/with space {i}.txt", i % 5)
            } else {
                format!("d{}/s{}/file-{i:03}.bin", i % 5, i % 3)
            };
            let size = if i % 50 == 0 { 0 } else { (i * 7919) % 70_000 };
            (name, pattern_bytes(size as usize, i))
        })
        .collect()
}

#[tokio::test]
async fn awscli_sync_of_200_files_both_ways_then_nothing_to_do_then_ls_rm_rb() {
    let Some(s3) = S3::start().await else { return };
    let files = sync_tree();
    let up = s3.path("up");
    write_tree(&up, &files);
    let down = s3.path("down");
    std::fs::create_dir_all(&down).unwrap();
    s3.aws_ok(&["s3", "mb", "s3://tree"]).await;

    let out = s3
        .aws_ok(&["s3", "sync", "--no-progress", arg(&up), "s3://tree/t"])
        .await;
    assert_eq!(lines_starting(&out, "upload:"), 200, "{out}");
    let out = s3
        .aws_ok(&["s3", "sync", "--no-progress", "s3://tree/t", arg(&down)])
        .await;
    assert_eq!(lines_starting(&out, "download:"), 200, "{out}");
    assert_eq!(
        tree(&down),
        tree(&up),
        "the tree synced down differs from the one synced up"
    );

    // Both ways again: nothing to do.
    let out = s3
        .aws_ok(&["s3", "sync", "--no-progress", arg(&up), "s3://tree/t"])
        .await;
    assert_eq!(
        lines_starting(&out, "upload:"),
        0,
        "a second sync up transferred again:\n{out}"
    );
    let out = s3
        .aws_ok(&["s3", "sync", "--no-progress", "s3://tree/t", arg(&down)])
        .await;
    assert_eq!(
        lines_starting(&out, "download:"),
        0,
        "a second sync down transferred again:\n{out}"
    );

    let listed = parse_ls(&s3.aws_ok(&["s3", "ls", "--recursive", "s3://tree/"]).await);
    let expected: BTreeMap<String, u64> = files
        .iter()
        .map(|(rel, bytes)| (format!("t/{rel}"), bytes.len() as u64))
        .collect();
    assert_eq!(listed, expected, "aws s3 ls --recursive");

    // rb refuses a bucket that is not empty.
    let refused = s3.run(s3.aws(&["s3", "rb", "s3://tree"]), CLIENT_LIMIT).await;
    assert!(!refused.success, "rb of a non-empty bucket succeeded");
    assert!(refused.stderr.contains("BucketNotEmpty"), "{}", refused.stderr);

    let out = s3.aws_ok(&["s3", "rm", "--recursive", "s3://tree/t"]).await;
    assert_eq!(lines_starting(&out, "delete:"), 200, "{out}");
    let listed = s3.aws_ok(&["s3", "ls", "--recursive", "s3://tree/"]).await;
    assert!(
        parse_ls(&listed).is_empty(),
        "left after rm --recursive:\n{listed}"
    );
    s3.aws_ok(&["s3", "rb", "s3://tree"]).await;
    let buckets = s3.aws_ok(&["s3", "ls"]).await;
    assert!(
        !buckets.contains(" tree"),
        "the bucket is still listed:\n{buckets}"
    );
    let head = s3
        .run(
            s3.aws(&["s3api", "head-bucket", "--bucket", "tree"]),
            CLIENT_LIMIT,
        )
        .await;
    assert!(!head.success, "head-bucket of a removed bucket succeeded");
}

#[tokio::test]
async fn awscli_s3api_multipart_out_of_order_with_a_reuploaded_part_and_a_gap() {
    let Some(s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://parts"]).await;
    let p1 = pattern_bytes(5 * MIB as usize, 11);
    let p3_first = pattern_bytes(5 * MIB as usize, 12);
    let p3 = pattern_bytes(5 * MIB as usize + 123, 13);
    let p7 = pattern_bytes(MIB as usize + 5, 14);
    let upload_id = s3
        .aws_json(&[
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "parts",
            "--key",
            "assembled.bin",
        ])
        .await["UploadId"]
        .as_str()
        .expect("an UploadId")
        .to_string();

    let upload = |number: u32, bytes: &Vec<u8>, name: &str| {
        let path = s3.path(name);
        std::fs::write(&path, bytes).unwrap();
        let number = number.to_string();
        let upload_id = upload_id.clone();
        let s3 = &s3;
        async move {
            let answer = s3
                .aws_json(&[
                    "s3api",
                    "upload-part",
                    "--bucket",
                    "parts",
                    "--key",
                    "assembled.bin",
                    "--upload-id",
                    &upload_id,
                    "--part-number",
                    &number,
                    "--body",
                    arg(&path),
                ])
                .await;
            answer["ETag"].as_str().expect("an ETag").to_string()
        }
    };
    // Out of order: 7, 3, 1, then 3 again with other bytes.
    let e7 = upload(7, &p7, "p7").await;
    let e3_first = upload(3, &p3_first, "p3-first").await;
    let e1 = upload(1, &p1, "p1").await;
    let e3 = upload(3, &p3, "p3").await;
    for (etag, bytes) in [(&e7, &p7), (&e3_first, &p3_first), (&e1, &p1), (&e3, &p3)] {
        assert_eq!(
            *etag,
            format!("\"{}\"", md5_hex(bytes)),
            "a part's ETag is its md5"
        );
    }

    let parts = s3
        .aws_json(&[
            "s3api",
            "list-parts",
            "--bucket",
            "parts",
            "--key",
            "assembled.bin",
            "--upload-id",
            &upload_id,
        ])
        .await;
    let listed: Vec<(u64, String, u64)> = parts["Parts"]
        .as_array()
        .expect("Parts")
        .iter()
        .map(|p| {
            (
                p["PartNumber"].as_u64().unwrap(),
                p["ETag"].as_str().unwrap().to_string(),
                p["Size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (1, e1.clone(), p1.len() as u64),
            (3, e3.clone(), p3.len() as u64),
            (7, e7.clone(), p7.len() as u64)
        ],
        "the second upload of part 3 replaced the first"
    );

    let manifest = s3.path("parts.json");
    let doc = serde_json::json!({"Parts": [
        {"PartNumber": 1, "ETag": e1},
        {"PartNumber": 3, "ETag": e3},
        {"PartNumber": 7, "ETag": e7},
    ]});
    std::fs::write(&manifest, doc.to_string()).unwrap();
    let done = s3
        .aws_json(&[
            "s3api",
            "complete-multipart-upload",
            "--bucket",
            "parts",
            "--key",
            "assembled.bin",
            "--upload-id",
            &upload_id,
            "--multipart-upload",
            &format!("file://{}", arg(&manifest)),
        ])
        .await;
    let expected_etag = multipart_etag(&[md5_of(&p1), md5_of(&p3), md5_of(&p7)]);
    assert_eq!(done["ETag"], expected_etag.as_str());

    let out = s3.path("assembled.out");
    let got = s3
        .aws_json(&[
            "s3api",
            "get-object",
            "--bucket",
            "parts",
            "--key",
            "assembled.bin",
            arg(&out),
        ])
        .await;
    assert_eq!(got["ETag"], expected_etag.as_str());
    let whole = [p1, p3, p7].concat();
    assert!(
        std::fs::read(&out).unwrap() == whole,
        "the completed object is not parts 1, 3 (second upload), 7"
    );
    assert_eq!(
        s3.master_view("/parts/assembled.bin").await,
        (whole.len() as u64, sha256_hex(&whole))
    );
    let uploads = s3
        .aws_json(&["s3api", "list-multipart-uploads", "--bucket", "parts"])
        .await;
    assert!(
        uploads
            .get("Uploads")
            .is_none_or(|u| u.as_array().is_none_or(|a| a.is_empty())),
        "the completed upload is still listed: {uploads}"
    );
}

// --- boto3 ------------------------------------------------------------------------

#[tokio::test]
async fn boto3_suite_passes() {
    let Some(s3) = S3::start().await else { return };
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3");
    let mut cmd = Command::new(s3.clients.venv_bin.join("python"));
    cmd.args([
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "--color=no",
    ])
    .arg(&suite)
    .current_dir(&s3.work);
    s3.aws_env(&mut cmd);
    cmd.env("S3_ENDPOINT", s3.gateway.endpoint())
        .env("S3_ACCESS_KEY", S3_ACCESS_KEY)
        .env("S3_SECRET_KEY", S3_SECRET_KEY)
        .env("TROVE_MASTER", format!("http://{}", s3.cluster.master.addr));
    let shown = describe(&cmd);
    let run = s3.run(cmd, BIG_LIMIT).await;
    eprintln!("{}", run.stdout);
    assert!(
        run.success,
        "`{shown}` failed (its report is above)\n--- the gateway's log ends\n{}",
        s3.gateway.log_tail(40)
    );
    assert!(
        run.stdout.contains(" passed"),
        "pytest ran no test:\n{}",
        run.stdout
    );
}

// --- rclone -----------------------------------------------------------------------

#[tokio::test]
async fn rclone_copy_sync_and_md5_check_of_a_tree_with_a_multipart_file() {
    let Some(s3) = S3::start().await else { return };
    // A 12 MiB file goes multipart in 5 MiB chunks with the cutoff lowered.
    let multipart = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"];
    let local = s3.path("local");
    let mut files: Vec<(String, Vec<u8>)> = (0..20u64)
        .map(|i| {
            (
                format!("dir{}/small-{i}.dat", i % 3),
                pattern_bytes((i * 3001) as usize, i),
            )
        })
        .collect();
    files.push(("big/twelve-mib.bin".into(), pattern_bytes(12 * MIB as usize, 99)));
    files.push(("empty.txt".into(), vec![]));
    write_tree(&local, &files);

    s3.ok(s3.rclone(&["mkdir", "trove:rclone-b"]), CLIENT_LIMIT).await;
    let mut copy = s3.rclone(&["copy", arg(&local), "trove:rclone-b/data"]);
    copy.args(multipart);
    s3.ok(copy, CLIENT_LIMIT).await;
    let big = s3
        .aws_json(&[
            "s3api",
            "head-object",
            "--bucket",
            "rclone-b",
            "--key",
            "data/big/twelve-mib.bin",
        ])
        .await;
    assert!(
        big["ETag"].as_str().unwrap_or("").ends_with("-3\""),
        "the 12 MiB file was not uploaded in 3 parts: {big}"
    );

    let check = |expect: usize| {
        let local = local.clone();
        let s3 = &s3;
        async move {
            let run = s3
                .run(
                    s3.rclone(&["check", arg(&local), "trove:rclone-b/data"]),
                    CLIENT_LIMIT,
                )
                .await;
            assert!(run.success, "rclone check found differences:\n{}", run.stderr);
            assert!(run.stderr.contains("0 differences found"), "{}", run.stderr);
            assert!(
                run.stderr.contains(&format!("{expect} matching files")),
                "expected {expect} matching files:\n{}",
                run.stderr
            );
            assert!(
                !run.stderr.contains("hashes could not be checked")
                    && !run.stderr.contains("no hashes in common"),
                "rclone could not compare md5s:\n{}",
                run.stderr
            );
        }
    };
    check(files.len()).await;

    // Change the tree: one file gone, one changed, one new; sync makes the
    // remote match again.
    std::fs::remove_file(local.join("dir0/small-3.dat")).unwrap();
    std::fs::write(local.join("dir1/small-1.dat"), pattern_bytes(4000, 1234)).unwrap();
    std::fs::write(local.join("new file.txt"), b"added after the copy").unwrap();
    let mut sync = s3.rclone(&["sync", arg(&local), "trove:rclone-b/data"]);
    sync.args(multipart);
    s3.ok(sync, CLIENT_LIMIT).await;
    check(files.len()).await;
    let listed = s3
        .ok(
            s3.rclone(&["lsf", "-R", "--files-only", "trove:rclone-b/data"]),
            CLIENT_LIMIT,
        )
        .await;
    let mut remote: Vec<&str> = listed.lines().collect();
    remote.sort();
    let expected: Vec<String> = tree(&local).into_keys().collect();
    assert_eq!(remote, expected, "rclone lsf after the sync");

    // And back down, byte for byte.
    let back = s3.path("back");
    s3.ok(
        s3.rclone(&["copy", "trove:rclone-b/data", arg(&back)]),
        CLIENT_LIMIT,
    )
    .await;
    assert_eq!(tree(&back), tree(&local), "the tree copied back differs");
}

/// Server-side copies of an object completed by a multipart upload get
/// the ETags S3 gives them: aws-cli's `s3 cp s3://… s3://…` copies a large
/// object part by part (UploadPartCopy), so its copy has the multipart ETag
/// of aws-cli's 8 MiB parts; rclone copies it in one CopyObject, so its
/// copy is one part whose ETag is the md5 of the bytes, which rclone then
/// reads as the copy's md5. The original answers `partNumber` reads.
#[tokio::test]
async fn server_side_copies_of_a_multipart_object_by_awscli_and_rclone() {
    let Some(s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://copies"]).await;
    let bytes = pattern_bytes(20 * MIB as usize, 7);
    let source = s3.path("twenty-mib");
    std::fs::write(&source, &bytes).unwrap();
    let part_md5s: Vec<[u8; 16]> = bytes.chunks(AWSCLI_PART as usize).map(md5_of).collect();
    let whole_md5 = md5_hex(&bytes);
    s3.ok(
        s3.aws(&["s3", "cp", "--no-progress", arg(&source), "s3://copies/mp"]),
        CLIENT_LIMIT,
    )
    .await;
    let head = |key: &'static str, part: Option<&'static str>| {
        let s3 = &s3;
        async move {
            let mut args = vec!["s3api", "head-object", "--bucket", "copies", "--key", key];
            args.extend(part.map(|p| ["--part-number", p]).into_iter().flatten());
            s3.aws_json(&args).await
        }
    };
    assert_eq!(head("mp", None).await["ETag"], multipart_etag(&part_md5s));
    let third = head("mp", Some("3")).await;
    assert_eq!(
        (
            &third["PartsCount"],
            &third["ContentLength"],
            &third["ContentRange"]
        ),
        (
            &3.into(),
            &(4 * MIB).into(),
            &"bytes 16777216-20971519/20971520".into()
        ),
        "{third}"
    );

    s3.ok(
        s3.aws(&[
            "s3",
            "cp",
            "--no-progress",
            "s3://copies/mp",
            "s3://copies/by-awscli",
        ]),
        CLIENT_LIMIT,
    )
    .await;
    assert_eq!(
        head("by-awscli", None).await["ETag"],
        multipart_etag(&part_md5s),
        "aws-cli copies part by part"
    );

    s3.ok(
        s3.rclone(&["copyto", "trove:copies/mp", "trove:copies/by-rclone"]),
        CLIENT_LIMIT,
    )
    .await;
    let copy = head("by-rclone", None).await;
    assert_eq!(
        copy["ETag"],
        format!("\"{whole_md5}\"").as_str(),
        "one CopyObject"
    );
    assert!(copy.get("PartsCount").is_none(), "{copy}");
    let sums = s3
        .ok(s3.rclone(&["md5sum", "trove:copies/by-rclone"]), CLIENT_LIMIT)
        .await;
    assert!(sums.starts_with(&whole_md5), "rclone md5sum: {sums}");
    for key in ["by-awscli", "by-rclone"] {
        assert_eq!(
            s3.master_view(&format!("/copies/{key}")).await,
            (bytes.len() as u64, sha256_hex(&bytes))
        );
    }
}

// --- s3cmd ------------------------------------------------------------------------

#[tokio::test]
async fn s3cmd_put_get_ls_del() {
    let Some(s3) = S3::start().await else { return };
    let small = pattern_bytes(70_000, 5);
    // Above s3cmd's 15 MiB multipart chunk.
    let big = pattern_bytes(20 * MIB as usize, 6);
    std::fs::write(s3.path("small.bin"), &small).unwrap();
    std::fs::write(s3.path("big.bin"), &big).unwrap();

    s3.ok(s3.s3cmd(&["mb", "s3://s3c"]), CLIENT_LIMIT).await;
    for name in ["small.bin", "big.bin"] {
        s3.ok(
            s3.s3cmd(&["put", arg(&s3.path(name)), &format!("s3://s3c/files/{name}")]),
            CLIENT_LIMIT,
        )
        .await;
    }
    let listed = s3.ok(s3.s3cmd(&["ls", "-r", "s3://s3c"]), CLIENT_LIMIT).await;
    for (name, bytes) in [("small.bin", &small), ("big.bin", &big)] {
        let line = listed
            .lines()
            .find(|l| l.ends_with(&format!("s3://s3c/files/{name}")))
            .unwrap_or_else(|| panic!("s3cmd ls does not list {name}:\n{listed}"));
        assert!(line.contains(&format!(" {} ", bytes.len())), "{line}");
    }
    for (name, bytes) in [("small.bin", &small), ("big.bin", &big)] {
        let out = s3.path(&format!("{name}.got"));
        let run = s3
            .run(
                s3.s3cmd(&["get", &format!("s3://s3c/files/{name}"), arg(&out)]),
                CLIENT_LIMIT,
            )
            .await;
        assert!(run.success, "s3cmd get {name}: {}", run.stderr);
        assert!(
            !run.stderr.contains("MD5 signatures do not match"),
            "{}",
            run.stderr
        );
        assert!(
            std::fs::read(&out).unwrap() == *bytes,
            "s3cmd get {name}: other bytes"
        );
    }
    s3.ok(s3.s3cmd(&["del", "s3://s3c/files/small.bin"]), CLIENT_LIMIT)
        .await;
    s3.ok(s3.s3cmd(&["del", "s3://s3c/files/big.bin"]), CLIENT_LIMIT)
        .await;
    let listed = s3.ok(s3.s3cmd(&["ls", "-r", "s3://s3c"]), CLIENT_LIMIT).await;
    assert!(listed.trim().is_empty(), "left after del:\n{listed}");
    s3.ok(s3.s3cmd(&["rb", "s3://s3c"]), CLIENT_LIMIT).await;
}

// --- one namespace: S3 and plain HTTP ------------------------------------------------

/// GET `key` through the master: the 302, then the volume it points at.
/// Returns the volume's answer.
async fn plain_get(s3: &S3, key: &str) -> reqwest::Response {
    let redirect = s3.cluster.http.get(s3.cluster.url(key)).send().await.unwrap();
    assert_eq!(redirect.status(), 302, "GET {key} through the master");
    let location = redirect.headers()["location"].to_str().unwrap().to_string();
    let answer = s3.cluster.http.get(&location).send().await.unwrap();
    assert_eq!(answer.status(), 200, "GET {location}");
    answer
}

#[tokio::test]
async fn object_put_with_awscli_reads_with_plain_http_following_the_master_302() {
    let Some(s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://xapi"]).await;
    let picture = pattern_bytes(3 * MIB as usize, 21);
    std::fs::write(s3.path("pic.png"), &picture).unwrap();
    s3.aws_ok(&[
        "s3",
        "cp",
        "--no-progress",
        "--content-type",
        "image/png",
        arg(&s3.path("pic.png")),
        "s3://xapi/pics/pic.png",
    ])
    .await;
    let answer = plain_get(&s3, "/xapi/pics/pic.png").await;
    assert_eq!(
        answer.headers()["content-type"],
        "image/png",
        "the volume's Content-Type"
    );
    assert!(
        answer.bytes().await.unwrap() == picture,
        "other bytes through the redirect"
    );

    // A multipart object (aws-cli: above 8 MiB) is a plain value too.
    let big = s3.path("big.bin");
    let file = write_big_file(&big, 20 * MIB, 22, AWSCLI_PART).await;
    s3.aws_ok(&["s3", "cp", "--no-progress", arg(&big), "s3://xapi/big.bin"])
        .await;
    let mut body = plain_get(&s3, "/xapi/big.bin").await.bytes_stream();
    let mut sha = Sha256::new();
    while let Some(chunk) = body.next().await {
        sha2::Digest::update(&mut sha, chunk.unwrap());
    }
    assert_eq!(hex::encode(sha2::Digest::finalize(sha)), file.sha256);
}

#[tokio::test]
async fn key_put_with_plain_http_appears_in_aws_s3_ls() {
    let Some(s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://xapi"]).await;
    // Like `curl -T`: no Trove headers, no S3.
    let text = b"written with a plain PUT".to_vec();
    assert_eq!(s3.cluster.put("/xapi/from-curl.txt", text.clone()).await, 201);
    let listed = parse_ls(&s3.aws_ok(&["s3", "ls", "s3://xapi/"]).await);
    assert_eq!(
        listed.get("from-curl.txt"),
        Some(&(text.len() as u64)),
        "{listed:?}"
    );
    let got = s3.aws_ok(&["s3", "cp", "s3://xapi/from-curl.txt", "-"]).await;
    assert_eq!(got.as_bytes(), text);

    // A first path segment written only with curl is a bucket to S3.
    assert_eq!(
        s3.cluster
            .put("/curlonly/dir/file.txt", b"curl only".to_vec())
            .await,
        201
    );
    let buckets = s3.aws_ok(&["s3", "ls"]).await;
    assert!(
        buckets.lines().any(|l| l.ends_with(" curlonly")),
        "a bucket of curl-written keys is not listed:\n{buckets}"
    );
    let listed = parse_ls(&s3.aws_ok(&["s3", "ls", "--recursive", "s3://curlonly/"]).await);
    assert_eq!(listed.get("dir/file.txt"), Some(&9), "{listed:?}");
}

// --- zero-copy GetObject ----------------------------------------------------------------

/// Large GetObjects go from the volume's socket to the client's with
/// `splice`: byte-identical, whole and by range, on one keep-alive
/// connection, and a volume that cuts its answer (a corrupt block) is
/// replaced mid-way by the other replica.
#[tokio::test]
async fn large_gets_are_spliced_byte_identical_and_survive_a_corrupt_replica() {
    let Some(s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://zerocopy"]).await;
    let size = 5 * MIB as usize + 123;
    let value = pattern_bytes(size, 31);
    assert_eq!(s3.cluster.put("/zerocopy/big", value.clone()).await, 201);
    let url = s3
        .aws_ok(&["s3", "presign", "s3://zerocopy/big", "--expires-in", "600"])
        .await
        .trim()
        .to_string();
    // One client, one connection to the gateway for every GET below.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let gateway = s3.gateway.server.pid();

    // The ordinary path writes every byte it passes on with `writev`
    // (counted in `wchar`); `splice` is not counted.
    let before = trove_tests::proc_io(gateway, "wchar");
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == value, "the whole value");
    let written = trove_tests::proc_io(gateway, "wchar") - before;
    assert!(
        written < size as u64 / 4,
        "the gateway wrote {written} bytes itself for a {size}-byte object: not spliced"
    );

    let m = MIB as usize;
    for (range, want) in [
        (format!("bytes={}-{}", m - 5, 3 * m + 4), m - 5..3 * m + 5),
        (format!("bytes={}-", 4 * m), 4 * m..size),
        (format!("bytes=-{}", 2 * m), size - 2 * m..size),
        // Under the splice threshold: the ordinary path, same bytes.
        ("bytes=10-2009".to_string(), 10..2010),
    ] {
        let resp = http.get(&url).header("range", &range).send().await.unwrap();
        assert_eq!(resp.status(), 206, "{range}");
        assert!(
            resp.bytes().await.unwrap()[..] == value[want],
            "{range}: other bytes"
        );
    }

    // One replica rots in its third block. The master sends readers to the
    // replicas in turn, so of two GETs one starts on the rotten copy: the
    // volume cuts its answer before that block, and the gateway reads the
    // rest from the other replica.
    let rotten = (0..s3.cluster.volumes.len())
        .find(|i| s3.cluster.blob_path(*i, "/zerocopy/big").exists())
        .expect("a replica");
    trove_tests::flip_byte(&s3.cluster.blob_path(rotten, "/zerocopy/big"), 2 * MIB + 77);
    for round in 0..2 {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.unwrap() == value, "round {round}: other bytes");
    }
    let log = s3.gateway.server.log();
    assert!(
        log.contains("reading the rest by range"),
        "no GET met the rotten replica:\n{log}"
    );
}

// --- memory --------------------------------------------------------------------------

#[tokio::test]
async fn gateway_peak_rss_stays_under_64_mib_while_4_awscli_clients_move_1_gib_each() {
    let Some(s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://rss"]).await;
    let source = s3.path("one-gib");
    let file = write_big_file(&source, GIB, 3, AWSCLI_PART).await;
    let before = s3.gateway.peak_rss();

    // Four clients at once, each up then down (aws-cli moves 10 parts at a
    // time, so the gateway has ~40 requests in flight).
    let clients = (0..4).map(|i| {
        let s3 = &s3;
        let source = &source;
        async move {
            let key = format!("s3://rss/copy-{i}");
            let down = s3.path(&format!("down-{i}"));
            let up = s3
                .run(
                    s3.aws(&["s3", "cp", "--no-progress", arg(source), &key]),
                    BIG_LIMIT,
                )
                .await;
            if !up.success {
                return Err(format!("client {i} up: {}", up.stderr.trim()));
            }
            let back = s3
                .run(
                    s3.aws(&["s3", "cp", "--no-progress", &key, arg(&down)]),
                    BIG_LIMIT,
                )
                .await;
            if !back.success {
                return Err(format!("client {i} down: {}", back.stderr.trim()));
            }
            Ok(down)
        }
    });
    let results = futures::future::join_all(clients).await;
    let peak = s3.gateway.peak_rss();
    eprintln!(
        "gateway peak RSS: {} MiB before, {} MiB after 4 x 1 GiB up and down",
        before >> 20,
        peak >> 20
    );
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "clients failed (the gateway's peak RSS so far: {} MiB):\n{}\n--- the gateway's log ends\n{}",
        peak >> 20,
        failed.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("\n"),
        s3.gateway.log_tail(20)
    );
    let downs: Vec<PathBuf> = results.into_iter().map(Result::unwrap).collect();
    for down in downs {
        assert_eq!(
            file_sha256(&down).await,
            file.sha256,
            "{} differs",
            down.display()
        );
        std::fs::remove_file(down).unwrap();
    }
    assert!(
        peak <= GATEWAY_PEAK_RSS_LIMIT,
        "the gateway's peak RSS was {} MiB (limit {} MiB)",
        peak >> 20,
        GATEWAY_PEAK_RSS_LIMIT >> 20
    );
}

/// An `Expect: 100-continue` request with no body (`Content-Length: 0`,
/// what aws-cli sends for an empty file) is answered without a `100
/// Continue`. botocore then reads the *next* answer on that connection
/// wrong (it keeps the early answer's status line, takes the real one for
/// a header, finds no `Content-Length`) and waits for a body until its
/// 60 s read timeout; `aws s3 sync` of a tree with empty files lost the
/// uploads that followed them. The gateway therefore closes such a
/// connection after the answer. Ten clients at once, as aws-cli's ten
/// threads do; unsigned, so the answer is a 403, which takes the same path.
#[tokio::test]
async fn an_empty_expect_100_continue_put_is_answered_and_its_connection_closed() {
    use std::io::Write as _;
    use trove_tests::raw;
    let cluster = Cluster::start_default().await;
    let gateway = Gateway::start(&cluster, &[]).await;
    let addr = gateway.server.addr.clone();
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = raw::connect(&addr);
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                write!(
                    s,
                    "PUT /bucket/empty-{i} HTTP/1.1\r\nHost: {addr}\r\nExpect: 100-continue\r\n\
                     Content-Length: 0\r\n\r\n"
                )
                .unwrap();
                let (head, _) = raw::read_answer(&mut s);
                assert_ne!(
                    raw::status(&head),
                    100,
                    "a 100 Continue for an empty body: {head}"
                );
                assert_eq!(
                    raw::header(&head, "connection").as_deref(),
                    Some("close"),
                    "an answer sent without a 100 Continue keeps the connection:\n{head}"
                );
                raw::wait_closed(&mut s);
            })
        })
        .collect();
    for c in clients {
        c.join()
            .expect("a client saw its answer and the connection close");
    }
}

/// An answer made before an upload's body was read (here: an unsigned
/// request, refused before the body) closes its connection. The client,
/// answered instead of sent `100 Continue`, does not send the body; hyper,
/// which still expects it, took the first bytes of the client's next
/// request on the connection for it when they arrived in time (about 1
/// valid request in 200 then failed, 403 or a bare 400). A bounded loop
/// of 8 clients × 25 such requests, each followed by a second request on
/// the same connection, which must not be read.
#[tokio::test]
async fn an_answer_before_a_100_continue_body_closes_the_connection() {
    use std::io::Write as _;
    use trove_tests::raw;
    let cluster = Cluster::start_default().await;
    let gateway = Gateway::start(&cluster, &[]).await;
    let addr = gateway.server.addr.clone();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for j in 0..25 {
                    let mut s = raw::connect(&addr);
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    write!(
                        s,
                        "PUT /bucket/k-{i}-{j} HTTP/1.1\r\nHost: {addr}\r\nExpect: 100-continue\r\n\
                         Content-Length: 300\r\n\r\n"
                    )
                    .unwrap();
                    let (head, _) = raw::read_answer(&mut s);
                    assert_eq!(raw::status(&head), 403, "{head}");
                    assert_eq!(
                        raw::header(&head, "connection").as_deref(),
                        Some("close"),
                        "an answer sent before the body was read keeps the connection:\n{head}"
                    );
                    // The client's next request, which the connection must
                    // not take for the body it never sent.
                    let _ = write!(s, "GET /-/healthy HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                    assert_eq!(
                        raw::wait_closed(&mut s),
                        0,
                        "the request after the early answer was read"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("each early answer closed its connection");
    }
}

/// A master that is down: the gateway answers `503 ServiceUnavailable`
/// (which SDKs retry) promptly, not `500` after ~15 s of retrying, and its
/// message does not give away the master's address; the gateway's log
/// keeps it.
#[tokio::test]
async fn a_master_that_is_down_is_a_prompt_503_without_its_address() {
    let Some(mut s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://downs"]).await;
    let master = s3.cluster.master.addr.clone();
    s3.cluster.master.kill();
    for args in [
        &["s3api", "list-objects-v2", "--bucket", "downs"][..],
        &["s3api", "head-bucket", "--bucket", "downs"],
    ] {
        let mut cmd = s3.aws(args);
        cmd.env("AWS_MAX_ATTEMPTS", "1");
        let started = Instant::now();
        let run = s3.run(cmd, CLIENT_LIMIT).await;
        let took = started.elapsed();
        assert!(
            !run.success,
            "{args:?} succeeded with the master down: {}",
            run.stdout
        );
        assert!(
            run.stderr.contains("ServiceUnavailable") || run.stderr.contains("503"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains(&master),
            "{args:?} names the master: {}",
            run.stderr
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
    let log = s3.gateway.server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("cannot be reached") && l.contains(&master)),
        "the gateway's log does not say which master it could not reach:\n{log}"
    );
}

/// A client's mistakes — a missing key or bucket, a wrong secret — are
/// not the gateway's errors: its log (at the harness's `RUST_LOG=info`)
/// has no `ERROR` line for them, and a refused signature is one `INFO`
/// line naming the code, the path and the request's id (the one the
/// client was given).
#[tokio::test]
async fn client_mistakes_are_not_logged_as_errors() {
    let Some(s3) = S3::start().await else { return };
    s3.aws_ok(&["s3", "mb", "s3://quiet"]).await;
    let out = s3.path("nothing");
    let out = out.to_str().unwrap();
    for args in [
        &["s3api", "get-object", "--bucket", "quiet", "--key", "absent", out][..],
        &["s3api", "head-object", "--bucket", "quiet", "--key", "absent"],
        &["s3api", "list-objects-v2", "--bucket", "no-such-bucket"],
        &["s3api", "delete-bucket", "--bucket", "no-such-bucket"],
    ] {
        let run = s3.run(s3.aws(args), CLIENT_LIMIT).await;
        assert!(!run.success, "{args:?} succeeded: {}", run.stdout);
    }
    let mut wrong_secret = s3.aws(&["--debug", "s3", "ls", "s3://quiet"]);
    wrong_secret.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let run = s3.run(wrong_secret, CLIENT_LIMIT).await;
    assert!(
        !run.success && run.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        run.stderr
    );
    let log = s3.gateway.server.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "client mistakes logged as errors:\n{}",
        errors.join("\n")
    );
    let refused = log
        .lines()
        .find(|l| l.contains("refused") && l.contains("SignatureDoesNotMatch"))
        .unwrap_or_else(|| panic!("no line for the refused signature:\n{log}"));
    assert!(
        refused.contains("INFO")
            && refused.contains("path=/quiet")
            && refused.contains("signature we calculated does not match"),
        "{refused}"
    );
    let id = refused
        .split("request=")
        .nth(1)
        .and_then(|rest| rest.get(..16))
        .unwrap_or_else(|| panic!("no request id: {refused}"));
    assert!(
        run.stderr.contains(id),
        "the client was not given the logged request id {id}"
    );
}

/// CompleteMultipartUpload answers `200` at once and the outcome once the
/// object is built: a failure found then (here: too few volumes for the
/// object's replicas) must still be one XML document that clients
/// read, naming the error and its request id — aws-cli shows S3's code
/// and message, not a bare `500 Internal Server Error`.
#[tokio::test]
async fn a_completion_that_fails_after_its_200_began_is_an_error_clients_read() {
    let Some(mut s3) = S3::start_with_replicas(3).await else {
        return;
    };
    s3.aws_ok(&["s3", "mb", "s3://late"]).await;
    let upload_id = s3
        .aws_json(&[
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "late",
            "--key",
            "k",
        ])
        .await["UploadId"]
        .as_str()
        .expect("an UploadId")
        .to_string();
    let mut parts = Vec::new();
    for (number, len) in [(1, 5 * MIB as usize), (2, 1000)] {
        let path = s3.path(&format!("late-part-{number}"));
        std::fs::write(&path, pattern_bytes(len, number)).unwrap();
        let part = s3
            .aws_json(&[
                "s3api",
                "upload-part",
                "--bucket",
                "late",
                "--key",
                "k",
                "--upload-id",
                &upload_id,
                "--part-number",
                &number.to_string(),
                "--body",
                arg(&path),
            ])
            .await;
        parts.push(serde_json::json!({"PartNumber": number, "ETag": part["ETag"]}));
    }
    let manifest = s3.path("late-parts.json");
    std::fs::write(&manifest, serde_json::json!({ "Parts": parts }).to_string()).unwrap();
    // Three replicas, two volumes left: the parts can be read, but the
    // object cannot be written.
    s3.cluster.volumes[2].kill();
    s3.cluster.wait_volume_health(2, false).await;
    let mut cmd = s3.aws(&[
        "s3api",
        "complete-multipart-upload",
        "--bucket",
        "late",
        "--key",
        "k",
        "--upload-id",
        &upload_id,
        "--multipart-upload",
        &format!("file://{}", arg(&manifest)),
    ]);
    cmd.env("AWS_MAX_ATTEMPTS", "1");
    let run = s3.run(cmd, CLIENT_LIMIT).await;
    assert!(!run.success, "completed with one volume of two: {}", run.stdout);
    assert!(
        run.stderr.contains("(ServiceUnavailable)") && run.stderr.contains("healthy volume"),
        "aws-cli did not read the error: {}",
        run.stderr
    );
    let log = s3.gateway.server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("CompleteMultipartUpload failed")),
        "the gateway's log does not have the failure:\n{log}"
    );
}
