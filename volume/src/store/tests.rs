//! Unit tests of the store: writes, replaces, failures, recovery.

use super::durable::replace_file;
use super::layout::{sidecar_of, TMP_DIR};
use super::*;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::sync::Arc;
use trove_common::record::BlobState;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, io::Error>> {
    futures::stream::iter(
        parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p)))
            .collect::<Vec<_>>(),
    )
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn tmp_is_empty(dir: &Path) -> bool {
    fs::read_dir(dir.join(TMP_DIR)).unwrap().next().is_none()
}

const STALL: Duration = Duration::from_secs(5);

fn len(n: u64) -> Expected {
    Expected {
        len: Some(n),
        ..Default::default()
    }
}

#[tokio::test]
async fn writes_reads_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(vec![dir.path().into()], true).unwrap());
    let k = key("/a/b");
    let meta = store
        .write_stream(&k, chunks(&[b"hel", b"lo"]), len(5), STALL)
        .await
        .unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(meta.md5, "", "volumes do not compute md5");
    assert_eq!(meta.sha256, "", "nor a master write's sha256: the mark brings it");
    assert_eq!(
        blocks::whole(meta.crc32c.as_deref().unwrap(), 5),
        Some(0x9a71bb4c)
    );
    // The file is where the hash says, with its metadata.
    let (data, _) = BlobStore::paths_in(dir.path(), &k);
    assert_eq!(data, dir.path().join(k.blob_relpath()));
    assert_eq!(fs::read(&data).unwrap(), b"hello");
    assert_eq!(layout::read_meta(&data).unwrap(), meta);
    assert_eq!(store.counts(), (1, 5));
    assert!(tmp_is_empty(dir.path()));

    let blob = store.open_blob(&k).unwrap();
    assert_eq!(blob.meta, meta);
    // Replacing is atomic and keeps the counts right.
    store
        .write_stream(&k, chunks(&[b"bye"]), Expected::default(), STALL)
        .await
        .unwrap();
    assert_eq!(fs::read(&data).unwrap(), b"bye");
    assert_eq!(store.counts(), (1, 3));

    assert_eq!(blob.meta.state, BlobState::Pending);
    // Unconfirmed, it is verified by its block checksums.
    assert!(store.verify(&k).unwrap().ok);
    let md5 = "5d41402abc4b2a76b9719d911017c592".to_string();
    let marked = store
        .set_state(
            &k,
            BlobState::Live,
            Some(md5.clone()),
            Some(sha256_hex(b"bye")),
            None,
        )
        .unwrap();
    assert_eq!((marked.state, marked.md5), (BlobState::Live, md5));
    assert_eq!(marked.sha256, sha256_hex(b"bye"));
    // A sha256 once known is never changed by a mark.
    let again = store
        .set_state(&k, BlobState::Live, None, Some(sha256_hex(b"other")), None)
        .unwrap();
    assert_eq!(again.sha256, sha256_hex(b"bye"));
    assert_eq!(store.open_blob(&k).unwrap().meta.state, BlobState::Live);
    assert!(store.verify(&k).unwrap().ok);
    // One flipped byte is found by verify (the sidecar still says "bye").
    fs::write(&data, b"bYe").unwrap();
    let v = store.verify(&k).unwrap();
    assert!(!v.ok);
    assert_eq!(v.meta.sha256, sha256_hex(b"bye"));
    assert_eq!(v.actual_sha256, sha256_hex(b"bYe"));
    assert!(tmp_is_empty(dir.path()));

    assert!(store.delete(&k).unwrap());
    assert!(!store.delete(&k).unwrap());
    assert!(matches!(store.open_blob(&k), Err(StoreError::NotFound)));
    assert_eq!(store.counts(), (0, 0));
}

fn write_of(id: &str, replaces: Option<&str>) -> Expected {
    Expected {
        write: Some(id.into()),
        replaces: replaces.map(str::to_string),
        meta: [("content-type".to_string(), format!("text/{id}"))].into(),
        // Hashed, so that the values can be pinned by sha256 below.
        hash_sha256: true,
        ..Default::default()
    }
}

fn read_all(blob: OpenBlob) -> Vec<u8> {
    let mut f = blob.file;
    let mut bytes = vec![];
    io::Read::read_to_end(&mut f, &mut bytes).unwrap();
    bytes
}

/// A replace: reads pinned to the old write are served from the copy
/// kept aside until the new write is confirmed, then told "replaced";
/// an aborted replace puts the old copy back, metadata included.
#[tokio::test]
async fn pinned_reads_follow_a_replace() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(vec![dir.path().into()], false).unwrap());
    let k = key("/r");
    store
        .write_stream(&k, chunks(&[b"one"]), write_of("0001", None), STALL)
        .await
        .unwrap();
    // The old write's confirmation never arrived: still pending, but
    // named as the write replaced, so it is kept aside all the same.
    let old = store.open_pinned(&k, &Pin::Write("0001".into())).unwrap();
    assert_eq!(old.meta.meta["content-type"], "text/0001");
    store
        .write_stream(&k, chunks(&[b"two!"]), write_of("0002", Some("0001")), STALL)
        .await
        .unwrap();
    assert_eq!(
        read_all(store.open_pinned(&k, &Pin::Write("0001".into())).unwrap()),
        b"one"
    );
    assert_eq!(
        read_all(store.open_pinned(&k, &Pin::Write("0002".into())).unwrap()),
        b"two!"
    );
    assert_eq!(read_all(store.open_blob(&k).unwrap()), b"two!");
    assert!(matches!(
        store.open_pinned(&k, &Pin::Write("0003".into())),
        Err(StoreError::Replaced)
    ));
    // A value stored before writes had ids is pinned by its bytes.
    let by_sha = |v: &[u8]| Pin::Sha256(sha256_hex(v));
    assert_eq!(read_all(store.open_pinned(&k, &by_sha(b"one")).unwrap()), b"one");
    assert_eq!(
        read_all(store.open_pinned(&k, &by_sha(b"two!")).unwrap()),
        b"two!"
    );
    assert!(matches!(
        store.open_pinned(&k, &by_sha(b"other")),
        Err(StoreError::Replaced)
    ));
    // Aborted: the old copy is back in place, as it was.
    let aborted = store.abort(&k, "0002").unwrap();
    assert!(aborted.restored);
    let back = store.open_pinned(&k, &Pin::Write("0001".into())).unwrap();
    assert_eq!(back.meta, old.meta);
    assert_eq!(read_all(back), b"one");
    assert!(matches!(
        store.open_pinned(&k, &Pin::Write("0002".into())),
        Err(StoreError::Replaced)
    ));

    // Replaced again and confirmed: the old copy goes.
    store
        .write_stream(&k, chunks(&[b"three"]), write_of("0004", Some("0001")), STALL)
        .await
        .unwrap();
    assert_eq!(
        read_all(store.open_pinned(&k, &Pin::Write("0001".into())).unwrap()),
        b"one"
    );
    store
        .set_state(&k, BlobState::Live, None, None, Some("0004"))
        .unwrap();
    assert!(matches!(
        store.open_pinned(&k, &Pin::Write("0001".into())),
        Err(StoreError::Replaced)
    ));
    let new = store.open_pinned(&k, &Pin::Write("0004".into())).unwrap();
    assert_eq!(new.meta.meta["content-type"], "text/0004");
    assert_eq!(read_all(new), b"three");
    // Without naming it, a pending copy of another write is not kept.
    store
        .write_stream(&k, chunks(&[b"4"]), write_of("0005", None), STALL)
        .await
        .unwrap();
    store
        .write_stream(&k, chunks(&[b"5"]), write_of("0006", None), STALL)
        .await
        .unwrap();
    assert!(matches!(
        store.open_pinned(&k, &Pin::Write("0005".into())),
        Err(StoreError::Replaced)
    ));
    assert_eq!(store.counts(), (1, 1));
}

#[tokio::test]
async fn empty_blobs_are_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(vec![dir.path().into()], true).unwrap());
    let k = key("/dir/");
    let hashed = Expected {
        hash_sha256: true,
        ..len(0)
    };
    let meta = store.write_stream(&k, chunks(&[]), hashed, STALL).await.unwrap();
    assert_eq!((meta.size, meta.sha256.as_str()), (0, sha256_hex(b"").as_str()));
    assert_eq!(meta.crc32c.as_deref(), Some(""));
    assert!(read_all(store.open_blob(&k).unwrap()).is_empty());
    assert!(store.verify(&k).unwrap().ok);
    assert_eq!(store.counts(), (1, 0));
}

#[test]
fn replace_file_swaps_or_renames() {
    let dir = tempfile::tempdir().unwrap();
    let (new, target) = (dir.path().join("new"), dir.path().join("target"));
    fs::write(&target, b"old").unwrap();
    fs::write(&new, b"new").unwrap();
    replace_file(&new, &target).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"new");
    assert_eq!(fs::read(&new).unwrap(), b"old", "the old file is handed back");
    // No target: a plain rename.
    fs::remove_file(&target).unwrap();
    replace_file(&new, &target).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"old");
    assert!(!new.exists());
}

#[tokio::test]
async fn failed_writes_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(vec![dir.path().into()], false).unwrap());
    let k = key("/x");
    let short = store.write_stream(&k, chunks(&[b"abc"]), len(10), STALL).await;
    assert!(matches!(
        short,
        Err(StoreError::LengthMismatch { expected: 10, got: 3 })
    ));
    let long = store
        .write_stream(&k, chunks(&[b"abc", b"def"]), len(4), STALL)
        .await;
    assert!(matches!(long, Err(StoreError::LengthMismatch { .. })));
    let bad_sha = store
        .write_stream(
            &k,
            chunks(&[b"abc"]),
            Expected {
                sha256: Some([0; 32]),
                ..Default::default()
            },
            STALL,
        )
        .await;
    assert!(matches!(bad_sha, Err(StoreError::DigestMismatch { .. })));
    let broken = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::other("connection reset")),
    ]);
    let aborted = store.write_stream(&k, broken, Expected::default(), STALL).await;
    assert!(matches!(aborted, Err(StoreError::BodyAborted(_))));
    let stalled = store
        .write_stream(
            &k,
            futures::stream::pending::<Result<Bytes, io::Error>>(),
            Expected::default(),
            Duration::from_millis(50),
        )
        .await;
    assert!(matches!(stalled, Err(StoreError::Stalled(_))));
    // The same with a length announced: a small value is received whole
    // before it is written, a larger one streamed to its writer.
    for announced in [6, super::write::INLINE_WRITE_MAX + 1] {
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::other("connection reset")),
        ]);
        let aborted = store.write_stream(&k, broken, len(announced), STALL).await;
        assert!(matches!(aborted, Err(StoreError::BodyAborted(_))), "{announced}");
        let stalled = store
            .write_stream(
                &k,
                futures::stream::iter([Ok(Bytes::from_static(b"abc"))])
                    .chain(futures::stream::pending::<Result<Bytes, io::Error>>()),
                len(announced),
                Duration::from_millis(50),
            )
            .await;
        assert!(matches!(stalled, Err(StoreError::Stalled(_))), "{announced}");
        let too_long: Vec<io::Result<Bytes>> = vec![Ok(Bytes::from(vec![1u8; announced as usize + 1]))];
        let long = store
            .write_stream(&k, futures::stream::iter(too_long), len(announced), STALL)
            .await;
        assert!(
            matches!(long, Err(StoreError::LengthMismatch { .. })),
            "{announced}"
        );
    }
    assert!(matches!(store.open_blob(&k), Err(StoreError::NotFound)));
    assert!(tmp_is_empty(dir.path()));
    assert_eq!(store.counts(), (0, 0));
}

#[tokio::test]
async fn several_dirs_list_and_recover() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    let store = Arc::new(BlobStore::open(paths.clone(), false).unwrap());
    for i in 0..20 {
        let k = key(&format!("/k{i}"));
        store
            .write_stream(&k, chunks(&[b"v"]), Expected::default(), STALL)
            .await
            .unwrap();
    }
    // Both dirs got some keys.
    for d in &dirs {
        assert!(fs::read_dir(d.path()).unwrap().count() > 1);
    }
    let (tx, mut rx) = mpsc::channel(100);
    let s = Arc::clone(&store);
    tokio::task::spawn_blocking(move || s.list(tx))
        .await
        .unwrap()
        .unwrap();
    let mut listed = vec![];
    while let Some(m) = rx.recv().await {
        listed.push(m.key);
    }
    listed.sort();
    assert_eq!(listed.len(), 20);

    // A crash leftover: a data file without sidecar (or a blob copied
    // without its attribute), a temp file.
    let orphan = dirs[0].path().join("ab/cd").join("ab".repeat(32));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"junk").unwrap();
    fs::write(dirs[0].path().join("tmp/1.tmp"), b"junk").unwrap();
    drop(store);
    let store = BlobStore::open(paths, false).unwrap();
    assert!(!orphan.exists(), "out of the blob tree");
    let kept: Vec<_> = fs::read_dir(dirs[0].path().join("orphans"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "moved aside, not deleted: {kept:?}");
    assert_eq!(fs::read(&kept[0]).unwrap(), b"junk");
    assert!(tmp_is_empty(dirs[0].path()));
    assert_eq!(store.counts(), (20, 20));
    // A key is found even when the dir list changed order.
    let k = key("/k3");
    assert!(store.open_blob(&k).is_ok());
}

#[tokio::test]
async fn a_new_dir_list_leaves_one_copy() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (a, b) = (dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf());
    let old = Arc::new(BlobStore::open(vec![a.clone()], false).unwrap());
    let keys: Vec<Key> = (0..8).map(|i| key(&format!("/moved/{i}"))).collect();
    for k in &keys {
        old.write_stream(k, chunks(&[b"old"]), Expected::default(), STALL)
            .await
            .unwrap();
    }
    drop(old);
    // A second disk: some keys now belong there. Rewriting them must
    // not leave the old copy behind, nor must deleting them.
    let store = Arc::new(BlobStore::open(vec![a.clone(), b.clone()], false).unwrap());
    for k in &keys {
        store
            .write_stream(k, chunks(&[b"new"]), Expected::default(), STALL)
            .await
            .unwrap();
        let copies = [&a, &b]
            .iter()
            .filter(|d| d.join(k.blob_relpath()).exists())
            .count();
        assert_eq!(copies, 1, "{k}");
        let mut blob = store.open_blob(k).unwrap();
        let mut bytes = vec![];
        io::Read::read_to_end(&mut blob.file, &mut bytes).unwrap();
        assert_eq!(bytes, b"new");
    }
    assert_eq!(store.counts(), (8, 24));
    for k in &keys {
        assert!(store.delete(k).unwrap());
        assert!(
            matches!(store.open_blob(k), Err(StoreError::NotFound)),
            "{k} came back"
        );
    }
    assert_eq!(store.counts(), (0, 0));
}

#[test]
fn unwritable_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let err = BlobStore::open(vec![file.clone()], false).err().unwrap();
    assert!(format!("{err:#}").contains("cannot create data dir"), "{err:#}");
}

/// Lists the files in the folder of `k`'s blob.
fn files_beside(dir: &Path, k: &Key) -> Vec<String> {
    let data = dir.join(k.blob_relpath());
    let mut names: Vec<String> = fs::read_dir(data.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The on-disk format of a small write: one file, the value's bytes as
/// they are, the metadata in its `user.trove.meta` attribute (the same
/// JSON a sidecar holds); a confirmation changes the attribute and creates
/// no file.
#[tokio::test]
async fn a_small_write_is_one_file_with_its_metadata_attached() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(vec![dir.path().into()], true).unwrap());
    if !store.xattrs {
        assert!(
            std::env::var("CI").is_err(),
            "no user xattrs in {}",
            dir.path().display()
        );
        eprintln!("skipped: no user extended attributes here");
        return;
    }
    let k = key("/one/file");
    let meta = store
        .write_stream(&k, chunks(&[b"hello"]), write_of("0001", None), STALL)
        .await
        .unwrap();
    let h = hex::encode(k.hash());
    assert_eq!(files_beside(dir.path(), &k), vec![h.clone()]);
    let data = dir.path().join(k.blob_relpath());
    assert_eq!(fs::read(&data).unwrap(), b"hello", "the file is the value");
    let attr = trove_common::xattr::get(&data)
        .unwrap()
        .expect("metadata attribute");
    assert_eq!(BlobMeta::decode(&attr).unwrap(), meta);
    // Golden: the attribute's name and the JSON's fields as a person reads them.
    assert_eq!(trove_common::xattr::META_ATTR, "user.trove.meta");
    let json: serde_json::Value = serde_json::from_slice(&attr).unwrap();
    assert_eq!(json["key"], "/one/file");
    assert_eq!(json["size"], 5);
    assert_eq!(json["state"], "pending");
    assert_eq!(json["write"], "0001");
    assert_eq!(json["crc32c"], "9a71bb4c");
    assert_eq!(json["meta"]["content-type"], "text/0001");

    let marked = store
        .set_state(
            &k,
            BlobState::Live,
            Some("5d41402abc4b2a76b9719d911017c592".into()),
            None,
            Some("0001"),
        )
        .unwrap();
    assert_eq!(files_beside(dir.path(), &k), vec![h], "a mark creates no file");
    let attr = trove_common::xattr::get(&data).unwrap().unwrap();
    assert_eq!(BlobMeta::decode(&attr).unwrap(), marked);
    assert!(tmp_is_empty(dir.path()));
    // Reopened, the blob is found and counted from its attribute alone.
    drop(store);
    let store = BlobStore::open(vec![dir.path().into()], true).unwrap();
    assert_eq!(store.counts(), (1, 5));
    assert_eq!(store.open_blob(&k).unwrap().meta, marked);
}

/// Blobs stored before attributes were used (data + `.meta` sidecar) are
/// read, confirmed and deleted as they are; metadata too large for an
/// attribute goes to a sidecar.
#[tokio::test]
async fn sidecar_blobs_are_still_read_and_large_metadata_uses_one() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("/old/format");
    let data = dir.path().join(k.blob_relpath());
    fs::create_dir_all(data.parent().unwrap()).unwrap();
    fs::write(&data, b"hello").unwrap();
    // A sidecar as earlier volumes wrote it (golden: keep it readable).
    let golden = r#"{"key":"/old/format","size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","md5":"","created":1700000000000,"state":"pending","write":"0001","crc32c":"9a71bb4c"}"#;
    fs::write(sidecar_of(&data), golden).unwrap();
    let store = Arc::new(BlobStore::open(vec![dir.path().into()], true).unwrap());
    assert_eq!(store.counts(), (1, 5));
    let blob = store.open_blob(&k).unwrap();
    assert_eq!(
        (blob.meta.state, blob.meta.created),
        (BlobState::Pending, 1700000000000)
    );
    assert_eq!(read_all(blob), b"hello");
    let marked = store
        .set_state(
            &k,
            BlobState::Live,
            Some("5d41402abc4b2a76b9719d911017c592".into()),
            None,
            Some("0001"),
        )
        .unwrap();
    assert_eq!(
        BlobMeta::decode(&fs::read(sidecar_of(&data)).unwrap()).unwrap(),
        marked
    );
    assert!(store.verify(&k).unwrap().ok);
    assert!(store.delete(&k).unwrap());
    assert_eq!(files_beside(dir.path(), &k), Vec::<String>::new());

    // 4 KiB of user metadata: kept in a sidecar.
    let big = key("/big/meta");
    let expected = Expected {
        meta: [("x-amz-meta-big".to_string(), "m".repeat(4096))].into(),
        ..Default::default()
    };
    let meta = store
        .write_stream(&big, chunks(&[b"v"]), expected, STALL)
        .await
        .unwrap();
    let data = dir.path().join(big.blob_relpath());
    assert_eq!(trove_common::xattr::get(&data).unwrap(), None);
    assert_eq!(
        BlobMeta::decode(&fs::read(sidecar_of(&data)).unwrap()).unwrap(),
        meta
    );
    assert_eq!(store.open_blob(&big).unwrap().meta, meta);
}

/// Marks sent together (`set_states`) are each applied or refused as a
/// single mark would be, and all that apply are durable together: with
/// fsync on, concurrent writes and batches of marks all end confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_marks_each_get_their_own_outcome() {
    for shared_sync in [false, true] {
        batched_marks(shared_sync).await;
    }
}

async fn batched_marks(shared_sync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(vec![dir.path().into()], true).unwrap();
    let store = Arc::new(store.with_shared_sync(shared_sync));
    // 32 concurrent fsynced writes, sharing syncs.
    let writes = (0..32u32).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let k = key(&format!("/batch/{i}"));
            let id = format!("{:04}", i + 1);
            store
                .write_stream(&k, chunks(&[b"some ", b"bytes"]), write_of(&id, None), STALL)
                .await
                .unwrap();
            (k, id)
        }
    });
    let written: Vec<(Key, String)> = futures::future::join_all(writes).await;
    let mut changes: Vec<StateChange> = written
        .iter()
        .map(|(k, id)| StateChange {
            key: k.clone(),
            state: BlobState::Live,
            md5: Some("5d41402abc4b2a76b9719d911017c592".into()),
            sha256: Some(sha256_hex(b"some bytes")),
            write: Some(id.clone()),
            // The master's time for the value, which the copy takes.
            created: Some(1_700_000_000_123),
        })
        .collect();
    // One names another write, one a key that is not here.
    changes[3].write = Some("0999".into());
    changes.push(StateChange {
        key: key("/batch/absent"),
        state: BlobState::Live,
        md5: None,
        sha256: None,
        write: None,
        created: None,
    });
    let store2 = Arc::clone(&store);
    let outcomes = tokio::task::spawn_blocking(move || store2.set_states(changes))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 33);
    for (i, outcome) in outcomes.iter().enumerate() {
        match i {
            3 => assert!(matches!(outcome, Err(StoreError::OtherWrite(_))), "{outcome:?}"),
            32 => assert!(matches!(outcome, Err(StoreError::NotFound)), "{outcome:?}"),
            _ => {
                let meta = outcome.as_ref().unwrap();
                assert_eq!(meta.state, BlobState::Live);
                assert_eq!(meta.sha256, sha256_hex(b"some bytes"));
                assert_eq!(meta.created, 1_700_000_000_123);
                // What the store reads back is what the mark answered.
                let (data, _) = BlobStore::paths_in(dir.path(), &written[i].0);
                assert_eq!(&layout::read_meta(&data).unwrap(), meta);
            }
        }
    }
    let (data, _) = BlobStore::paths_in(dir.path(), &written[3].0);
    assert_eq!(layout::read_meta(&data).unwrap().state, BlobState::Pending);
}
