//! Where a key's files are: the data dir a key belongs to, the paths of
//! its blob and sidecar, where its metadata is read from, the lookup
//! across dirs, and the walk over every blob (for listing and start-up
//! recovery).
//!
//! A blob's metadata is in one of two places: the `user.trove.meta`
//! extended attribute of its data file (written since attributes were
//! adopted: one file per blob), or a `<h>.meta` sidecar beside it (blobs
//! stored before, blobs whose metadata is too large for an attribute, and
//! data dirs whose file system has no user attributes). The attribute is
//! read first.

use super::{BlobStore, OpenBlob, StoreError};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use trove_common::key::Key;
use trove_common::record::BlobMeta;
use trove_common::xattr;

/// Name of the temporary-upload folder inside each data dir.
pub(super) const TMP_DIR: &str = "tmp";
/// Where start-up moves data files that have no metadata ([`orphan`]).
pub(super) const ORPHANS_DIR: &str = "orphans";
/// The file holding a data dir's identity: a random id made when the dir
/// is first used. A dir that comes back with another id (or none) is not
/// the one that held the blobs, and the master stops trusting it for them.
pub(super) const ID_FILE: &str = "volume-id";
/// The file a running volume holds locked (`flock`) in each of its data
/// dirs, so that no second volume — nor the same one given a dir twice —
/// serves the same blobs under another address as if they were other
/// replicas.
pub(super) const LOCK_FILE: &str = "lock";
/// Suffix of a blob's sidecar.
const META_SUFFIX: &str = ".meta";

impl BlobStore {
    /// The data dir a key is written to.
    pub(super) fn home_dir(&self, key: &Key) -> &Path {
        let h = key.hash();
        let n = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
        &self.dirs[(n % self.dirs.len() as u64) as usize]
    }

    /// `(data, sidecar)` paths of a key inside `dir`.
    pub(super) fn paths_in(dir: &Path, key: &Key) -> (PathBuf, PathBuf) {
        let data = dir.join(key.blob_relpath());
        let meta = sidecar_of(&data);
        (data, meta)
    }

    /// The data dirs in the order a key's blob is looked for: its home
    /// dir first, then the others.
    fn search_order(&self, key: &Key) -> impl Iterator<Item = &Path> {
        let home = self.home_dir(key);
        std::iter::once(home).chain(self.dirs.iter().map(PathBuf::as_path).filter(move |d| *d != home))
    }

    /// Where the key's blob is: its home dir first, then the others.
    pub(super) fn locate(&self, key: &Key) -> Option<(PathBuf, PathBuf)> {
        self.search_order(key)
            .map(|d| Self::paths_in(d, key))
            .find(|(data, _)| has_meta(data))
    }

    /// The key's blob as [`BlobStore::locate`] finds it, with its metadata
    /// read in the same look: one `getxattr` for a blob whose metadata is
    /// in its attribute. `None` when no dir has the blob; an error when
    /// one has it but its metadata cannot be read. A dir whose attribute
    /// cannot be read at all (a failing disk) is passed over like one
    /// without the blob, so that a copy in another dir is still found.
    pub(super) fn find(&self, key: &Key) -> Result<Option<Found>, StoreError> {
        for dir in self.search_order(key) {
            let (data, sidecar) = Self::paths_in(dir, key);
            let (meta, in_attr) = match xattr::get(&data) {
                Ok(Some(bytes)) => (decode(&bytes, &data)?, true),
                Ok(None) => match read_sidecar(&sidecar) {
                    Ok(meta) => (meta, false),
                    Err(StoreError::NotFound) => continue,
                    Err(e) => return Err(e),
                },
                Err(_) => continue,
            };
            return Ok(Some(Found {
                data,
                sidecar,
                meta,
                in_attr,
            }));
        }
        Ok(None)
    }

    /// The lock stripe of `key`: renames of a key's files, and reads that
    /// must see its data and sidecar as one, happen under it.
    pub(super) fn stripe(&self, key: &Key) -> parking_lot::MutexGuard<'_, ()> {
        let i = key.hash()[0] as usize % self.stripes.len();
        self.stripes[i].lock()
    }

    /// [`walk`] over this store's data dirs.
    pub(super) fn walk(&self, f: impl FnMut(&Path)) -> io::Result<()> {
        walk(&self.dirs, f)
    }
}

/// A key's blob found on disk ([`BlobStore::find`]).
pub(super) struct Found {
    /// The data file.
    pub data: PathBuf,
    /// Where its sidecar is or would be.
    pub sidecar: PathBuf,
    pub meta: BlobMeta,
    /// The metadata is the data file's attribute (not a sidecar).
    pub in_attr: bool,
}

/// Calls `f(data path)` once for every blob hash in every data dir of
/// `dirs` that has any file: data, sidecar or a previous value.
pub(super) fn walk(dirs: &[PathBuf], mut f: impl FnMut(&Path)) -> io::Result<()> {
    for dir in dirs {
        for a in read_dir_sorted(dir)? {
            if a.file_name()
                .is_some_and(|n| n == TMP_DIR || n == ORPHANS_DIR || n == super::keyset::LISTING_DIR)
                || !a.is_dir()
            {
                continue;
            }
            for b in read_dir_sorted(&a)? {
                if !b.is_dir() {
                    continue;
                }
                // Blob files are named by 64 hex digits, plus suffixes
                // for the sidecar and a previous value; skip anything else.
                let mut hashes: Vec<String> = read_dir_sorted(&b)?
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str()?.get(..64).map(str::to_string))
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .collect();
                hashes.dedup();
                for h in hashes {
                    f(&b.join(h));
                }
            }
        }
    }
    Ok(())
}

/// The sidecar's path beside a data file: `<h>.meta`.
pub(super) fn sidecar_of(data: &Path) -> PathBuf {
    let mut meta = data.as_os_str().to_owned();
    meta.push(META_SUFFIX);
    meta.into()
}

/// The metadata of the blob file `data`: its attribute, else its sidecar.
/// [`StoreError::NotFound`] when there is neither (or no data file).
pub(super) fn read_meta(data: &Path) -> Result<BlobMeta, StoreError> {
    match xattr::get(data) {
        Ok(Some(bytes)) => decode(&bytes, data),
        Ok(None) => read_sidecar(&sidecar_of(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// Whether the blob file `data` keeps its metadata in its attribute.
pub(super) fn meta_in_attr(data: &Path) -> bool {
    matches!(xattr::get(data), Ok(Some(_)))
}

/// Whether the blob file `data` has metadata (attribute or sidecar);
/// `false` also when that cannot be told (see [`meta_presence`]).
pub(super) fn has_meta(data: &Path) -> bool {
    meta_presence(data).unwrap_or(false)
}

/// Whether the blob file `data` has metadata, attribute or sidecar:
/// `Ok(false)` only when it certainly has neither (or there is no data
/// file). An error reading the attribute or looking for the sidecar (a
/// failing disk) is an error, never "none": whoever would act on a file
/// without metadata must not act on this one.
pub(super) fn meta_presence(data: &Path) -> io::Result<bool> {
    match xattr::get(data) {
        Ok(Some(_)) => Ok(true),
        Ok(None) => match sidecar_of(data).symlink_metadata() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Moves a data file found without metadata out of the blob tree, into
/// its data dir's [`ORPHANS_DIR`] (named `<file name>.<unix ms>`), instead
/// of deleting it: a crash between a sidecar write's two renames leaves
/// such a file (bytes never confirmed), but so does a data dir copied
/// without its extended attributes (`cp -r`, `rsync` without `-X`), whose
/// every blob would otherwise be lost.
pub(super) fn orphan(data: &Path) {
    let Some((dir, name)) = data.ancestors().nth(3).zip(data.file_name()) else {
        return;
    };
    let orphans = dir.join(ORPHANS_DIR);
    let mut to = orphans.join(name);
    to.as_mut_os_string()
        .push(format!(".{}", trove_common::record::now_ms()));
    match fs::create_dir_all(&orphans).and_then(|()| fs::rename(data, &to)) {
        Ok(()) => tracing::warn!(
            from = %data.display(), to = %to.display(),
            "a data file without metadata (left by a crash, or copied without its extended attributes: copy data dirs with cp -a or rsync -X) was moved aside; delete it once checked"
        ),
        Err(e) => {
            tracing::error!(path = %data.display(), error = %e, "cannot move a data file without metadata aside; left in place")
        }
    }
}

/// Reads a sidecar file.
pub(super) fn read_sidecar(path: &Path) -> Result<BlobMeta, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound),
        Err(e) => return Err(e.into()),
    };
    decode(&bytes, path)
}

fn decode(bytes: &[u8], path: &Path) -> Result<BlobMeta, StoreError> {
    BlobMeta::decode(bytes).map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
}

/// Opens the data file `data` that the sidecar `meta` describes, checking
/// its length (caller holds the key's stripe).
pub(super) fn open_described(data: &Path, meta: BlobMeta, dir: usize) -> Result<OpenBlob, StoreError> {
    let file = match File::open(data) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len != meta.size {
        return Err(StoreError::Corrupt(format!(
            "{} is {len} bytes but its metadata says {}",
            data.display(),
            meta.size
        )));
    }
    Ok(OpenBlob { file, meta, dir })
}

/// The paths in `dir`, sorted; none when it does not exist.
pub(super) fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    entries.sort();
    Ok(entries)
}
