//! Each shard's `MANIFEST`: what a scan of the segments alone cannot tell.
//!
//! - **Which segments exist**, with the size each was preallocated to. A segment that
//!   is missing (the first, the last, any) or shorter than its preallocated size is
//!   detected, instead of read as a log that simply starts later or ends sooner.
//! - **The reserved sequence numbers**: every id below `reserved_seq` may have been
//!   given out. The writer reserves ids in blocks ahead of use, durably, so after any
//!   loss (a power cut in async mode, a full disk) numbering resumes past everything
//!   that was ever handed out: an id is never given to a second record. The
//!   reservation is also kept outside the shard directory, and the next id is past
//!   every piece of evidence, not only this file ([`crate::log::evidence`]).
//! - **A clean shutdown**: `clean_end` is the next sequence number, written once every
//!   record is synced. After it, any damage is corruption: there is no torn tail to
//!   cut, since nothing was being written.
//!
//! Format (little-endian), replaced atomically (written to `MANIFEST.tmp`, synced,
//! renamed over `MANIFEST`, directory synced):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EPROMAN\0` |
//! | 8 | 2 | format version, `1` |
//! | 10 | 2 | shard number |
//! | 12 | 4 | segment count `n` |
//! | 16 | 8 | `reserved_seq` |
//! | 24 | 8 | `clean_end`, or 0 while the server runs or after a crash |
//! | 32 | 16 n | each segment: first sequence number (8), preallocated size (8) |
//! | 32+16n | 4 | CRC32C of every byte before |

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::log::evidence::write_copy;
use crate::log::files::replace_durably;
use crate::log::record::{u16_at, u32_at, u64_at};

pub const MANIFEST: &str = "MANIFEST";
const MAGIC: &[u8; 8] = b"EPROMAN\0";
const VERSION: u16 = 1;
const HEADER: usize = 32;
/// Ids reserved at a time. A crash skips at most this many; a reservation is renewed
/// (one small synced write) once per half block.
pub const RESERVE_BLOCK: u64 = 1 << 20;

/// A segment the manifest lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub first_seq: u64,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub shard: u16,
    pub reserved_seq: u64,
    pub clean_end: Option<u64>,
    pub segments: Vec<Listed>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST)
}

impl Manifest {
    /// A manifest for a shard with no segment yet, reserving ids below `reserved_seq`.
    pub fn new(shard: u16, reserved_seq: u64) -> Manifest {
        Manifest {
            shard,
            reserved_seq,
            clean_end: None,
            segments: Vec::new(),
        }
    }

    /// Reads `dir`'s manifest; `Ok(None)` when there is none (a new shard, or a log
    /// written before manifests existed). A damaged one is an error.
    pub fn read(dir: &Path, shard: u16) -> Result<Option<Manifest>, String> {
        let path = path(dir);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let bad = |why: &str| Err(format!("{}: {why}", path.display()));
        if bytes.len() < HEADER + 4 || &bytes[..8] != MAGIC {
            return bad("not a manifest (bad magic or too short)");
        }
        let n = u32_at(&bytes, 12) as usize;
        if bytes.len() != HEADER + 16 * n + 4 {
            return bad("manifest length disagrees with its segment count");
        }
        let body = bytes.len() - 4;
        if crc32c::crc32c(&bytes[..body]) != u32_at(&bytes, body) {
            return bad("manifest checksum mismatch");
        }
        if u16_at(&bytes, 8) != VERSION {
            return bad("unsupported manifest version");
        }
        if u16_at(&bytes, 10) != shard {
            return bad("manifest belongs to another shard");
        }
        let clean = u64_at(&bytes, 24);
        Ok(Some(Manifest {
            shard,
            reserved_seq: u64_at(&bytes, 16),
            clean_end: (clean != 0).then_some(clean),
            segments: (0..n)
                .map(|i| Listed {
                    first_seq: u64_at(&bytes, HEADER + 16 * i),
                    size: u64_at(&bytes, HEADER + 16 * i + 8),
                })
                .collect(),
        }))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 16 * self.segments.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.reserved_seq.to_le_bytes());
        out.extend_from_slice(&self.clean_end.unwrap_or(0).to_le_bytes());
        for s in &self.segments {
            out.extend_from_slice(&s.first_seq.to_le_bytes());
            out.extend_from_slice(&s.size.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Replaces `dir`'s manifest with this one, durably, then the copy of its
    /// reservation in the data directory above `dir` ([`crate::log::evidence`]): both
    /// hold it before the caller gives any id of it. Blocking: small, and rare (start,
    /// stop, a new segment, a new block of ids).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        replace_durably(&dir.join("MANIFEST.tmp"), &path(dir), &self.encode())?;
        match dir.parent() {
            Some(data_dir) => write_copy(data_dir, self.shard, self.reserved_seq),
            None => Ok(()),
        }
    }
}
