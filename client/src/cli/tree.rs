//! The local side of `cp -r` and `sync`: walking a directory, and mapping
//! a path under it to a key under a prefix and back.
//!
//! Keys are `/`-separated UTF-8 text; file names are bytes. So not every
//! file name can become a key (one that is not UTF-8), nor every key a
//! path (`/p//x` has an empty segment, which no file name can hold). Each
//! such entry is reported and counted as one failed transfer by the
//! caller; it never stops the others.
//!
//! A key ending in `/` with an empty value is a **directory marker**, the
//! convention of S3 tools (every bucket has one, `/<bucket>/`; consoles
//! make them for "folders"). A download makes a marker the directory it
//! names — the prefix's own marker, the destination directory itself. An
//! upload carries files only, as `aws s3 cp` does: a directory is implied
//! by the keys of what it holds, and an empty one is not uploaded. So
//! `sync --delete` keeps a marker while its directory exists under the
//! source (the prefix's own always), and deletes it once it is gone.

use std::path::{Component, Path, PathBuf};

/// One file found under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// The path relative to the root.
    pub rel: PathBuf,
}

/// What [`walk`] found.
#[derive(Debug, Default)]
pub struct Tree {
    /// Files (and symbolic links to files), sorted by relative path.
    pub files: Vec<Entry>,
    /// Entries that could not be read (a dangling link, a directory
    /// without permission), with why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Everything under `root`. Symbolic links to files are followed; links
/// to directories are skipped (they could loop). Only an unreadable
/// `root` is an error: anything below it that cannot be read is listed in
/// [`Tree::unreadable`], so that the rest can still be copied.
pub fn walk(root: &Path) -> anyhow::Result<Tree> {
    let mut tree = Tree::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => {
                return Err(anyhow::Error::new(e).context(format!("cannot read {}", root.display())))
            }
            Err(e) => {
                tree.unreadable
                    .push((dir, format!("cannot read the directory: {e}")));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tree.unreadable
                        .push((dir.clone(), format!("cannot list the directory: {e}")));
                    continue;
                }
            };
            let path = entry.path();
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) => {
                    tree.unreadable.push((path, format!("cannot read it: {e}")));
                    continue;
                }
            };
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if meta.is_dir() && !is_link {
                dirs.push(path);
            } else if meta.is_file() {
                let rel = path.strip_prefix(root).expect("under the root").to_path_buf();
                tree.files.push(Entry { path, rel });
            } else if !meta.is_dir() {
                // Reading a FIFO would wait for a writer, a device has no
                // end: said, never read.
                tree.unreadable.push((
                    path,
                    "not a regular file (a FIFO, socket or device): only files are copied".to_string(),
                ));
            }
        }
    }
    tree.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(tree)
}

/// The key (under `prefix`, which ends in `/`) for a file's path relative
/// to the root: its components joined by `/`. `Err` says why it cannot be
/// a key.
pub fn key_for(prefix: &str, rel: &Path) -> Result<String, String> {
    let mut key = prefix.to_string();
    for (i, component) in rel.components().enumerate() {
        let Component::Normal(name) = component else {
            return Err(format!("`{}` is not a path under the directory", rel.display()));
        };
        let name = name.to_str().ok_or_else(|| {
            "its name is not UTF-8, and keys are UTF-8 text: rename it to copy it".to_string()
        })?;
        if i > 0 {
            key.push('/');
        }
        key.push_str(name);
    }
    Ok(key)
}

/// Where a key goes under `dir`, given `rel`, the key after its prefix.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A file at this path.
    File(PathBuf),
    /// A directory marker (the key ends in `/`): this directory.
    Directory(PathBuf),
}

/// Maps `rel` (a key less its prefix, which ends in `/`) to a path under
/// `dir`. `Err` says why the key cannot be a path there.
pub fn target(dir: &Path, rel: &str) -> Result<Target, String> {
    // The prefix ends in `/`: an empty rest is the prefix's own marker.
    let (rel, directory) = match rel.strip_suffix('/') {
        Some(inner) => (inner, true),
        None => (rel, rel.is_empty()),
    };
    let mut path = dir.to_path_buf();
    if !rel.is_empty() {
        for segment in rel.split('/') {
            let why = match segment {
                "" => "it has an empty path segment (`//`), which no file name can hold",
                "." | ".." => "it has a `.` or `..` segment, which would leave the directory",
                s if s.contains('\0') => "it holds a NUL byte, which no file name can",
                _ => {
                    path.push(segment);
                    continue;
                }
            };
            return Err(format!("it cannot be a path under {}: {why}", dir.display()));
        }
    }
    Ok(if directory {
        Target::Directory(path)
    } else {
        Target::File(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths() {
        let dir = Path::new("dl");
        assert_eq!(target(dir, "a/b.txt"), Ok(Target::File("dl/a/b.txt".into())));
        // Directory markers, the prefix's own (a bucket's) among them.
        assert_eq!(target(dir, "a/"), Ok(Target::Directory("dl/a".into())));
        assert_eq!(target(dir, ""), Ok(Target::Directory("dl".into())));
        // No two keys may land on one path, nor any outside `dir`.
        for rel in ["/x", "a//x", "a//", "a/./b", "../x", "a/\0"] {
            let e = target(dir, rel).unwrap_err();
            assert!(e.starts_with("it cannot be a path under dl: "), "{rel}: {e}");
        }
    }

    #[test]
    fn paths_map_to_keys() {
        assert_eq!(key_for("/p/", Path::new("a/b.txt")), Ok("/p/a/b.txt".into()));
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let bad = Path::new(std::ffi::OsStr::from_bytes(b"a/bad\xff"));
            let e = key_for("/p/", bad).unwrap_err();
            assert!(e.ends_with("rename it to copy it"), "a whole sentence: {e}");
        }
    }

    #[test]
    fn walk_finds_files_and_what_it_cannot_read() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("a/empty")).unwrap();
        std::fs::create_dir_all(r.join("b/c")).unwrap();
        std::fs::write(r.join("a/x"), b"x").unwrap();
        std::fs::write(r.join("b/c/.keep"), b"").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(r.join("nowhere"), r.join("dangling")).unwrap();
        let tree = walk(r).unwrap();
        let rels = |v: &[Entry]| v.iter().map(|e| e.rel.clone()).collect::<Vec<_>>();
        assert_eq!(rels(&tree.files), [PathBuf::from("a/x"), "b/c/.keep".into()]);
        #[cfg(unix)]
        assert_eq!(tree.unreadable.len(), 1, "{:?}", tree.unreadable);
        #[cfg(unix)]
        {
            let fifo = r.join("a/fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(made.success(), "mkfifo");
            let tree = walk(r).unwrap();
            assert_eq!(rels(&tree.files).len(), 2, "a FIFO is no file to copy");
            assert!(
                tree.unreadable
                    .iter()
                    .any(|(p, why)| p == &fifo && why.contains("not a regular file")),
                "{:?}",
                tree.unreadable
            );
        }
        assert!(walk(&r.join("missing")).is_err());
    }
}
