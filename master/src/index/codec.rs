//! The index's binary record format.
//!
//! A record was JSON (~300 bytes with three volume addresses and hex
//! digests); at a hundred million keys that is tens of gigabytes. Version 1
//! is a compact binary form of the same [`Record`]:
//!
//! ```text
//! 0x01                      format version (JSON records start with `{`)
//! state                     u8: 0 writing, 1 live, 2 unlinked
//! flags                     u8: EXPIRES, WRITE, REPLACES, META, DAMAGED,
//!                           PARTS
//! volumes                   varint count, then a varint id per volume
//! size                      varint
//! sha256, md5               a digest each (below)
//! created                   varint, Unix ms
//! [expires]                 varint, Unix ms                  if EXPIRES
//! [damaged]                 varint count, varint ids         if DAMAGED
//! [write]                   a digest (the write id is hex)   if WRITE
//! [meta]                    varint count, then name, value   if META
//!                           as length-prefixed bytes
//! [parts]                   varint count of runs, then a     if PARTS
//!                           varint size and a varint repeat
//!                           count per run
//! [replaces]                varint length, a nested record   if REPLACES
//! ```
//!
//! Varints, length-prefixed bytes and digests are `trove_common::binary`'s
//! (a digest is raw bytes when its text is lower-case hex: a sha256 costs
//! 33 bytes).
//!
//! Parts (the part sizes of a completed S3 multipart upload) are stored
//! as runs of equal sizes: clients cut uploads into parts of one size, so
//! 10,000 parts usually cost a few bytes, and never more than ~4 per part.
//! `PARTS` was added within version 1: every record written before reads
//! as it did, and a record without parts is the same bytes as before. (A
//! master older than the flag cannot read a record with parts: it finds
//! trailing bytes. Going back to such a version after completing S3
//! multipart uploads is not supported.)
//!
//! Volumes are small ids from the [`VolumeTable`] kept in the index
//! beside the records: three replicas cost three bytes instead of ~50.
//! [`decode`] still reads the JSON records of earlier versions, which
//! [`super::Index::open`] rewrites once.

use std::collections::HashMap;
use trove_common::binary::{
    corrupt, put_bytes, put_digest, put_varint, take_bytes, take_digest, take_string, take_u8, take_varint,
};
use trove_common::record::{Meta, Record, RecordError, State};

/// The first byte of a version-1 record.
pub const VERSION: u8 = 1;

const EXPIRES: u8 = 1;
const WRITE: u8 = 1 << 1;
const REPLACES: u8 = 1 << 2;
const META: u8 = 1 << 3;
const DAMAGED: u8 = 1 << 4;
const PARTS: u8 = 1 << 5;

/// Volume addresses ↔ the small ids records store.
#[derive(Debug, Default, Clone)]
pub struct VolumeTable {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl VolumeTable {
    /// A table from stored `(id, address)` pairs; ids are dense from 0.
    pub fn from_entries(mut entries: Vec<(u32, String)>) -> Result<VolumeTable, RecordError> {
        entries.sort();
        let mut table = VolumeTable::default();
        for (id, name) in entries {
            if id as usize != table.names.len() {
                return Err(corrupt(&format!("volume table has no id {}", table.names.len())));
            }
            table.insert(name);
        }
        Ok(table)
    }

    fn insert(&mut self, name: String) -> u32 {
        let id = self.names.len() as u32;
        self.ids.insert(name.clone(), id);
        self.names.push(name);
        id
    }

    /// The id of `name`, if it has one.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Gives each of `names` without an id the next one; returns the new
    /// `(id, address)` entries, which the caller stores.
    pub fn assign<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) -> Vec<(u32, String)> {
        let mut added = vec![];
        for name in names {
            if self.id(name).is_none() {
                added.push((self.insert(name.to_string()), name.to_string()));
            }
        }
        added
    }

    fn name(&self, id: u32) -> Result<&str, RecordError> {
        self.names
            .get(id as usize)
            .map(String::as_str)
            .ok_or_else(|| corrupt(&format!("unknown volume id {id}")))
    }
}

/// Every volume address `record` names (with the record it replaces).
pub fn volumes_of(record: &Record) -> impl Iterator<Item = &str> {
    let mut out: Vec<&str> = vec![];
    let mut r = Some(record);
    while let Some(rec) = r {
        out.extend(rec.volumes.iter().chain(&rec.damaged).map(String::as_str));
        r = rec.replaces.as_deref();
    }
    out.into_iter()
}

/// The bytes stored for `record`. Every volume it names must have an id
/// (see [`VolumeTable::assign`]).
pub fn encode(record: &Record, table: &VolumeTable) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.push(VERSION);
    encode_body(record, table, &mut out);
    out
}

fn encode_body(r: &Record, table: &VolumeTable, out: &mut Vec<u8>) {
    out.push(match r.state {
        State::Writing => 0,
        State::Live => 1,
        State::Unlinked => 2,
    });
    let mut flags = 0;
    for (set, flag) in [
        (r.expires.is_some(), EXPIRES),
        (r.write.is_some(), WRITE),
        (r.replaces.is_some(), REPLACES),
        (!r.meta.is_empty(), META),
        (!r.damaged.is_empty(), DAMAGED),
        (!r.parts.is_empty(), PARTS),
    ] {
        if set {
            flags |= flag;
        }
    }
    out.push(flags);
    let ids = |names: &[String], out: &mut Vec<u8>| {
        put_varint(out, names.len() as u64);
        for name in names {
            let id = table
                .id(name)
                .expect("every volume is in the table before encoding");
            put_varint(out, id.into());
        }
    };
    ids(&r.volumes, out);
    put_varint(out, r.size);
    put_digest(out, &r.sha256);
    put_digest(out, &r.md5);
    put_varint(out, r.created);
    if let Some(t) = r.expires {
        put_varint(out, t);
    }
    if !r.damaged.is_empty() {
        ids(&r.damaged, out);
    }
    if let Some(w) = &r.write {
        put_digest(out, w);
    }
    if !r.meta.is_empty() {
        put_varint(out, r.meta.len() as u64);
        for (name, value) in &r.meta {
            put_bytes(out, name.as_bytes());
            put_bytes(out, value.as_bytes());
        }
    }
    if !r.parts.is_empty() {
        let runs = runs(&r.parts);
        put_varint(out, runs.len() as u64);
        for (size, repeat) in runs {
            put_varint(out, size);
            put_varint(out, repeat);
        }
    }
    if let Some(prev) = &r.replaces {
        let mut nested = Vec::with_capacity(96);
        encode_body(prev, table, &mut nested);
        put_bytes(out, &nested);
    }
}

/// Reads a stored record: version 1, or the JSON of earlier versions.
pub fn decode(bytes: &[u8], table: &VolumeTable) -> Result<Record, RecordError> {
    match bytes.first() {
        Some(&VERSION) => {
            let mut input = &bytes[1..];
            let record = decode_body(&mut input, table)?;
            if !input.is_empty() {
                return Err(corrupt("trailing bytes after the record"));
            }
            Ok(record)
        }
        Some(b'{') => Record::decode(bytes),
        Some(v) => Err(corrupt(&format!("unknown record format {v}"))),
        None => Err(corrupt("empty record")),
    }
}

/// Whether `bytes` is a record in the JSON of earlier versions.
pub fn is_json(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{')
}

fn decode_body(input: &mut &[u8], table: &VolumeTable) -> Result<Record, RecordError> {
    let state = match take_u8(input)? {
        0 => State::Writing,
        1 => State::Live,
        2 => State::Unlinked,
        s => return Err(corrupt(&format!("unknown state {s}"))),
    };
    let flags = take_u8(input)?;
    let ids = |input: &mut &[u8]| -> Result<Vec<String>, RecordError> {
        let n = take_varint(input)?;
        let mut names = Vec::with_capacity(n.min(64) as usize);
        for _ in 0..n {
            let id = u32::try_from(take_varint(input)?).map_err(|_| corrupt("volume id too large"))?;
            names.push(table.name(id)?.to_string());
        }
        Ok(names)
    };
    let volumes = ids(input)?;
    let size = take_varint(input)?;
    let sha256 = take_digest(input)?;
    let md5 = take_digest(input)?;
    let created = take_varint(input)?;
    let expires = (flags & EXPIRES != 0).then(|| take_varint(input)).transpose()?;
    let damaged = if flags & DAMAGED != 0 { ids(input)? } else { vec![] };
    let write = (flags & WRITE != 0).then(|| take_digest(input)).transpose()?;
    let mut meta = Meta::new();
    if flags & META != 0 {
        for _ in 0..take_varint(input)? {
            let name = take_string(input)?;
            meta.insert(name, take_string(input)?);
        }
    }
    let mut parts = vec![];
    if flags & PARTS != 0 {
        for _ in 0..take_varint(input)? {
            let size = take_varint(input)?;
            let repeat = take_varint(input)?;
            // A record holds at most MAX_COMPOSE_PARTS parts: a larger
            // count is damage, not a reason to allocate.
            if repeat == 0 || repeat > MAX_PARTS - parts.len() as u64 {
                return Err(corrupt("bad part run"));
            }
            parts.extend(std::iter::repeat_n(size, repeat as usize));
        }
    }
    let replaces = if flags & REPLACES != 0 {
        let mut nested = take_bytes(input)?;
        let prev = decode_body(&mut nested, table)?;
        if !nested.is_empty() {
            return Err(corrupt("trailing bytes after a replaced record"));
        }
        Some(Box::new(prev))
    } else {
        None
    };
    Ok(Record {
        state,
        volumes,
        size,
        sha256,
        md5,
        created,
        expires,
        damaged,
        write,
        replaces,
        meta,
        parts,
    })
}

/// At most this many parts in a record (a compose's limit).
const MAX_PARTS: u64 = trove_common::protocol::MAX_COMPOSE_PARTS as u64;

/// `sizes` as runs of equal values: `(size, repeat)`.
fn runs(sizes: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = vec![];
    for &size in sizes {
        match out.last_mut() {
            Some((s, n)) if *s == size => *n += 1,
            _ => out.push((size, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> VolumeTable {
        let mut t = VolumeTable::default();
        t.assign(["a:1", "b:2", "c:3"]);
        t
    }

    fn live() -> Record {
        Record {
            state: State::Live,
            volumes: vec!["a:1".into(), "b:2".into(), "c:3".into()],
            size: 5,
            sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
            md5: "5d41402abc4b2a76b9719d911017c592".into(),
            created: 1_700_000_000_000,
            expires: None,
            damaged: vec![],
            write: Some("018bcfe568000abc".into()),
            replaces: None,
            meta: Meta::new(),
            parts: vec![],
        }
    }

    /// Golden value: records already in an index must stay readable, so
    /// the format cannot change without a new version byte.
    #[test]
    fn version_1_is_stable() {
        let bytes = encode(&live(), &table());
        assert_eq!(
            hex::encode(&bytes),
            "0101020300010205202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\
             105d41402abc4b2a76b9719d911017c59280d095ffbc31\
             08018bcfe568000abc"
        );
        assert_eq!(bytes.len(), 73, "a live 3-replica record");
        assert_eq!(decode(&bytes, &table()).unwrap(), live());
    }

    /// Golden value of a completed multipart upload's record: three parts
    /// of 8 MiB and a last one of 1 MiB are two runs (8 bytes).
    #[test]
    fn parts_are_stored_as_runs() {
        let mut r = live();
        r.parts = vec![8 << 20, 8 << 20, 8 << 20, 1 << 20];
        let bytes = encode(&r, &table());
        assert_eq!(
            hex::encode(&bytes),
            "0101220300010205202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\
             105d41402abc4b2a76b9719d911017c59280d095ffbc31\
             08018bcfe568000abc\
             02808080040380804001"
        );
        assert_eq!(bytes.len(), 73 + 10);
        assert_eq!(decode(&bytes, &table()).unwrap(), r);
        // A record without parts is the same bytes as before parts existed.
        assert_eq!(encode(&live(), &table())[2] & PARTS, 0);
        let varied: Vec<u64> = (1..=10_000).collect();
        r.parts = varied;
        assert_eq!(decode(&encode(&r, &table()), &table()).unwrap(), r);
        assert_eq!(runs(&[3, 3, 1, 3]), vec![(3, 2), (1, 1), (3, 1)]);
        // More parts than a compose can have is damage.
        r.parts = vec![5];
        let mut bytes = encode(&r, &table());
        assert_eq!(bytes[bytes.len() - 3..], [1, 5, 1], "one run: 5 bytes, once");
        bytes.pop();
        bytes.extend([0xa0, 0x9c, 0x01]); // 20,000 times
        assert!(decode(&bytes, &table()).is_err());
    }

    #[test]
    fn every_field_round_trips() {
        let t = table();
        let mut r = live();
        r.expires = Some(1_700_003_600_000);
        r.damaged = vec!["c:3".into()];
        r.meta.insert("content-type".into(), "image/png".into());
        r.meta.insert("x-amz-meta-ü".into(), "ünïcode".into());
        r.parts = vec![5, 5, 1];
        let mut unlinked = live();
        unlinked.state = State::Unlinked;
        unlinked.write = None;
        let writing = Record::writing(vec!["b:2".into()], 9, "w1 not hex".into(), Some(r.clone()));
        let nested = Record::writing(vec!["a:1".into()], 10, "00ff".into(), Some(unlinked.clone()));
        for rec in [r, unlinked, writing, nested] {
            assert_eq!(decode(&encode(&rec, &t), &t).unwrap(), rec);
        }
        // Odd-length and upper-case "hex" are text, and stay as given.
        let mut odd = live();
        odd.sha256 = "ABC".into();
        odd.md5 = "abc".into();
        odd.write = Some("ab".repeat(128)); // hex, but longer than 127 bytes
        assert_eq!(decode(&encode(&odd, &t), &t).unwrap(), odd);
    }

    #[test]
    fn json_records_of_earlier_versions_still_decode() {
        let json = live().encode();
        assert!(is_json(&json));
        assert_eq!(decode(&json, &VolumeTable::default()).unwrap(), live());
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let t = table();
        let bytes = encode(&live(), &t);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], &t).is_err(), "cut at {cut}");
        }
        let mut unknown = bytes.clone();
        unknown[4] = 9; // the first volume id (after version, state, flags, count)
        assert!(decode(&unknown, &t)
            .unwrap_err()
            .to_string()
            .contains("unknown volume id 9"));
        assert!(decode(&[7, 1, 0], &t).is_err());
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode(&trailing, &t).is_err());
    }

    #[test]
    fn the_table_gives_dense_ids_and_reloads() {
        let mut t = VolumeTable::default();
        assert_eq!(
            t.assign(["x:1", "y:2", "x:1"]),
            vec![(0, "x:1".into()), (1, "y:2".into())]
        );
        assert!(t.assign(["y:2"]).is_empty());
        let again = VolumeTable::from_entries(vec![(1, "y:2".into()), (0, "x:1".into())]).unwrap();
        assert_eq!((again.id("x:1"), again.id("y:2")), (Some(0), Some(1)));
        assert!(VolumeTable::from_entries(vec![(1, "y:2".into())]).is_err());
    }
}
