//! `GET /-/listing`: every blob a volume holds, one compact binary frame
//! each, in key order (bytewise) — what `rebuild` merges across volumes.
//!
//! The answer is a sequence of frames, `varint length ‖ entry`, each entry
//! at most [`MAX_ENTRY`] bytes, and ends with one empty frame (a single
//! `0x00`, [`END`]): a listing that stops without it broke off, and a
//! reader must not take what it got for the whole. An entry is:
//!
//! ```text
//! 0x01        format version
//! flags       u8: the state in bits 0-1 (0 pending, 1 live, 2 unlinked),
//!             DAMAGED 1<<2, WRITE 1<<3, META 1<<4, FAULT 1<<5,
//!             UNREADABLE 1<<6 (the metadata does not read: only the key
//!             and the fault mean anything)
//! key         length-prefixed UTF-8
//! size        varint
//! sha256, md5 a digest each (trove_common::binary: raw when hex)
//! created     varint, Unix ms
//! [write]     a digest                                      if WRITE
//! [meta]      varint count, then name, value, length-prefixed if META
//! [fault]     length-prefixed text                          if FAULT
//! ```
//!
//! An entry is a blob's metadata ([`BlobMeta`]) without its block
//! checksums (`crc32c`: no caller of the listing uses them, and they grow
//! with the value), plus a `fault`: why the volume cannot serve this copy
//! although it holds it (metadata that does not parse, a data file whose
//! length differs from its metadata). A live 3-replica value of a 38-byte
//! key costs ~130 bytes against ~330 as a `/-/blobs` JSON line.

use crate::binary::{
    corrupt, put_bytes, put_digest, put_varint, take_bytes, take_digest, take_string, take_u8, take_varint,
};
use crate::record::{BlobMeta, BlobState, Meta, RecordError};

/// The first byte of a version-1 entry.
pub const VERSION: u8 = 1;
/// The largest entry a reader accepts (metadata is at most 8 KiB; keys
/// 4 KiB): a faulty or hostile volume cannot make the master buffer more.
pub const MAX_ENTRY: usize = 64 << 10;
/// The frame that ends a whole listing.
pub const END: [u8; 1] = [0];
/// The answer's content type.
pub const CONTENT_TYPE: &str = "application/vnd.trove.listing";

const STATE_MASK: u8 = 0b11;
const DAMAGED: u8 = 1 << 2;
const WRITE: u8 = 1 << 3;
const META: u8 = 1 << 4;
const FAULT: u8 = 1 << 5;
const UNREADABLE: u8 = 1 << 6;

/// One blob of a volume's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The blob's metadata; `crc32c` is always `None` here.
    pub meta: BlobMeta,
    /// Why the volume cannot serve this copy, if it cannot (beyond
    /// `meta.damaged`, its own verify's finding).
    pub fault: Option<String>,
    /// The copy's metadata does not read: of `meta`, only the key is real.
    pub unreadable: bool,
}

impl Listed {
    /// A copy the volume holds but cannot describe (its metadata does not
    /// read): only the key is known.
    pub fn unreadable(key: String, fault: String) -> Listed {
        Listed {
            meta: BlobMeta {
                key,
                size: 0,
                sha256: String::new(),
                md5: String::new(),
                created: 0,
                state: BlobState::Pending,
                damaged: true,
                write: None,
                crc32c: None,
                meta: Meta::new(),
            },
            fault: Some(fault),
            unreadable: true,
        }
    }

    /// Whether the copy is good to serve, as far as its volume knows.
    pub fn servable(&self) -> bool {
        !self.meta.damaged && self.fault.is_none()
    }
}

/// Appends the frame of `entry` (length, then the entry) to `out`.
pub fn put_frame(out: &mut Vec<u8>, entry: &Listed) {
    let mut body = Vec::with_capacity(128);
    encode(entry, &mut body);
    put_bytes(out, &body);
}

/// The entry's bytes (without the frame's length).
pub fn encode(entry: &Listed, out: &mut Vec<u8>) {
    let m = &entry.meta;
    out.push(VERSION);
    let mut flags = match m.state {
        BlobState::Pending => 0,
        BlobState::Live => 1,
        BlobState::Unlinked => 2,
    };
    for (set, flag) in [
        (m.damaged, DAMAGED),
        (m.write.is_some(), WRITE),
        (!m.meta.is_empty(), META),
        (entry.fault.is_some(), FAULT),
        (entry.unreadable, UNREADABLE),
    ] {
        if set {
            flags |= flag;
        }
    }
    out.push(flags);
    put_bytes(out, m.key.as_bytes());
    put_varint(out, m.size);
    put_digest(out, &m.sha256);
    put_digest(out, &m.md5);
    put_varint(out, m.created);
    if let Some(w) = &m.write {
        put_digest(out, w);
    }
    if !m.meta.is_empty() {
        put_varint(out, m.meta.len() as u64);
        for (name, value) in &m.meta {
            put_bytes(out, name.as_bytes());
            put_bytes(out, value.as_bytes());
        }
    }
    if let Some(f) = &entry.fault {
        put_bytes(out, f.as_bytes());
    }
}

/// Reads one entry's bytes, all of them.
pub fn decode(bytes: &[u8]) -> Result<Listed, RecordError> {
    let mut input = bytes;
    match take_u8(&mut input)? {
        VERSION => {}
        v => return Err(corrupt(&format!("unknown listing format {v}"))),
    }
    let flags = take_u8(&mut input)?;
    let state = match flags & STATE_MASK {
        0 => BlobState::Pending,
        1 => BlobState::Live,
        2 => BlobState::Unlinked,
        s => return Err(corrupt(&format!("unknown state {s}"))),
    };
    let key = take_string(&mut input)?;
    let size = take_varint(&mut input)?;
    let sha256 = take_digest(&mut input)?;
    let md5 = take_digest(&mut input)?;
    let created = take_varint(&mut input)?;
    let write = (flags & WRITE != 0)
        .then(|| take_digest(&mut input))
        .transpose()?;
    let mut meta = Meta::new();
    if flags & META != 0 {
        for _ in 0..take_varint(&mut input)? {
            let name = take_string(&mut input)?;
            meta.insert(name, take_string(&mut input)?);
        }
    }
    let fault = (flags & FAULT != 0)
        .then(|| take_string(&mut input))
        .transpose()?;
    if !input.is_empty() {
        return Err(corrupt("trailing bytes after a listing entry"));
    }
    Ok(Listed {
        meta: BlobMeta {
            key,
            size,
            sha256,
            md5,
            created,
            state,
            damaged: flags & DAMAGED != 0,
            write,
            crc32c: None,
            meta,
        },
        fault,
        unreadable: flags & UNREADABLE != 0,
    })
}

/// One frame of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Entry(Listed),
    /// The listing is whole.
    End,
}

/// Takes the first whole frame off `buf`: the frame and the bytes it
/// used, or `None` when `buf` holds only part of a frame so far. An entry
/// longer than [`MAX_ENTRY`] is an error, as soon as its length is read.
pub fn take_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, RecordError> {
    let Some(end) = buf.iter().take(10).position(|b| b & 0x80 == 0) else {
        return if buf.len() >= 10 {
            Err(corrupt("frame length longer than 64 bits"))
        } else {
            Ok(None)
        };
    };
    let mut input = &buf[..=end];
    let len = take_varint(&mut input)?;
    if len > MAX_ENTRY as u64 {
        return Err(corrupt(&format!(
            "a listing entry of {len} bytes (at most {MAX_ENTRY})"
        )));
    }
    if len == 0 {
        return Ok(Some((Frame::End, end + 1)));
    }
    let total = end + 1 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = &buf[..total];
    let body = take_bytes(&mut frame)?;
    Ok(Some((Frame::Entry(decode(body)?), total)))
}

/// Every entry of a whole listing held in `bytes`: an error unless it
/// ends with the end frame and nothing after it. (Readers of a stream use
/// [`take_frame`] as bytes arrive.)
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Listed>, RecordError> {
    let (mut entries, mut at) = (vec![], 0);
    loop {
        match take_frame(&bytes[at..])? {
            Some((Frame::Entry(e), used)) => {
                entries.push(e);
                at += used;
            }
            Some((Frame::End, used)) if at + used == bytes.len() => return Ok(entries),
            Some((Frame::End, _)) => return Err(corrupt("bytes after the end of a listing")),
            None => return Err(corrupt("a listing without its end frame")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Listed {
        Listed {
            meta: BlobMeta {
                key: "/a".into(),
                size: 5,
                sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
                md5: "5d41402abc4b2a76b9719d911017c592".into(),
                created: 1_700_000_000_000,
                state: BlobState::Live,
                damaged: false,
                write: Some("018bcfe568000abc".into()),
                crc32c: None,
                meta: Meta::new(),
            },
            fault: None,
            unreadable: false,
        }
    }

    /// Golden value, written out field by field: masters and volumes of
    /// one cluster may run different builds during an upgrade, so the
    /// format cannot change without a new version byte.
    #[test]
    fn version_1_is_stable() {
        let mut frame = vec![];
        put_frame(&mut frame, &live());
        let expected = [
            "47",                                                                 // frame length 71
            "01",                                                                 // version
            "09",                                                                 // live | WRITE
            "022f61",                                                             // key "/a"
            "05",                                                                 // size
            "202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", // sha256
            "105d41402abc4b2a76b9719d911017c592",                                 // md5
            "80d095ffbc31",                                                       // created
            "08018bcfe568000abc",                                                 // write id
        ]
        .concat();
        assert_eq!(hex::encode(&frame), expected);
        assert_eq!(
            take_frame(&frame).unwrap(),
            Some((Frame::Entry(live()), frame.len()))
        );
        assert_eq!(take_frame(&END).unwrap(), Some((Frame::End, 1)));
    }

    #[test]
    fn every_field_round_trips() {
        let mut all = live();
        all.meta.state = BlobState::Unlinked;
        all.meta.damaged = true;
        all.meta.meta.insert("content-type".into(), "image/png".into());
        all.meta.meta.insert("x-amz-meta-ü".into(), "ünïcode".into());
        all.fault = Some("data file is 3 bytes but its metadata says 5".into());
        let mut pending = live();
        pending.meta.state = BlobState::Pending;
        pending.meta.sha256 = String::new();
        pending.meta.md5 = "not hex".into();
        pending.meta.write = None;
        let unreadable = Listed::unreadable("/bad".into(), "cannot decode".into());
        let mut stream = vec![];
        for e in [&all, &pending, &unreadable] {
            let mut body = vec![];
            encode(e, &mut body);
            assert_eq!(&decode(&body).unwrap(), e);
            put_frame(&mut stream, e);
        }
        assert!(decode_all(&stream).is_err(), "no end frame yet");
        stream.extend_from_slice(&END);
        // Frames read back one after the other, up to the end.
        let got = decode_all(&stream).unwrap();
        assert_eq!(got, vec![all, pending, unreadable]);
        stream.push(1);
        assert!(decode_all(&stream).is_err(), "bytes after the end");
        assert!(!got_servable(&got));
    }

    fn got_servable(entries: &[Listed]) -> bool {
        entries.iter().all(Listed::servable)
    }

    #[test]
    fn partial_frames_wait_and_damage_is_an_error() {
        let mut frame = vec![];
        put_frame(&mut frame, &live());
        for cut in 0..frame.len() {
            assert_eq!(take_frame(&frame[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut body = vec![];
        encode(&live(), &mut body);
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut unknown = body.clone();
        unknown[0] = 2;
        assert!(decode(&unknown).is_err());
        let mut trailing = body;
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut huge = vec![];
        put_varint(&mut huge, MAX_ENTRY as u64 + 1);
        assert!(
            take_frame(&huge).is_err(),
            "too long an entry fails before it arrives"
        );
        assert!(take_frame(&[0xff; 10]).is_err());
    }
}
