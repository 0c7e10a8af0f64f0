//! Which ids a shard has given, known from more than one place, so that losing one of
//! them (a deleted or damaged `MANIFEST`, a lost last segment, the whole shard
//! directory, an interrupted `retire-shard`) never lets an id go to a second record.
//!
//! **The rule.** A shard's next sequence number is past every piece of evidence:
//! 1. its `MANIFEST`'s `reserved_seq` (every id below it may have been given);
//! 2. the copy of that reservation in the data directory, `<data_dir>/reserved-shard-<n>`
//!    (format below), replaced after every `MANIFEST` write and before any id of a new
//!    reservation is given, and outside the shard directory so that it outlives it;
//! 3. every record of its segments, and every segment's name (its first id);
//! 4. every log of the shard that `retire-shard` moved aside: its `MANIFEST`'s
//!    reservation and its segments' names.
//!
//! Missing evidence is damage, never a fresh start: segments without a readable
//! `MANIFEST`, or a copy whose shard has no `MANIFEST` (or no directory) any more.
//! `serve` refuses such a shard and `verify` fails naming it; `retire-shard` starts
//! the shard afresh past whatever evidence remains, and, when no reservation survives
//! (neither the `MANIFEST` nor the copy), one reservation block ([`RESERVE_BLOCK`])
//! further: as far as a reservation made at the last surviving record could reach.
//!
//! The copy (little-endian, 24 bytes, replaced atomically: temporary file, sync,
//! rename, directory sync):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EPROIDS\0` |
//! | 8 | 2 | format version, `1` |
//! | 10 | 2 | shard number |
//! | 12 | 8 | `reserved_seq`, as in the `MANIFEST` written just before |
//! | 20 | 4 | CRC32C of bytes 0..20 |
//!
//! A data directory written before the copy existed has none: it is written at the
//! shard's next start, from the `MANIFEST`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::log::datadir::retired_logs;
use crate::log::files::{list_segments, replace_durably};
use crate::log::manifest::{Manifest, MANIFEST, RESERVE_BLOCK};
use crate::log::record::{u16_at, u32_at, u64_at};
use crate::log::salvage::salvage_shard;

const MAGIC: &[u8; 8] = b"EPROIDS\0";
const VERSION: u16 = 1;
const LEN: usize = 24;

/// Where shard `shard`'s copy of its reservation lives.
pub fn copy_path(data_dir: &Path, shard: u16) -> PathBuf {
    data_dir.join(format!("reserved-shard-{shard}"))
}

/// The reservation the copy holds; `Ok(None)` when there is none. A damaged copy is an
/// error.
pub fn read_copy(data_dir: &Path, shard: u16) -> Result<Option<u64>, String> {
    let path = copy_path(data_dir, shard);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let bad = |why: &str| Err(format!("{}: {why}", path.display()));
    if bytes.len() != LEN || &bytes[..8] != MAGIC {
        return bad("not a reservation copy (bad magic or length)");
    }
    if crc32c::crc32c(&bytes[..20]) != u32_at(&bytes, 20) {
        return bad("reservation copy checksum mismatch");
    }
    if u16_at(&bytes, 8) != VERSION || u16_at(&bytes, 10) != shard {
        return bad("unsupported version, or the copy of another shard");
    }
    Ok(Some(u64_at(&bytes, 12)))
}

/// Replaces shard `shard`'s copy with `reserved_seq`, durably.
pub fn write_copy(data_dir: &Path, shard: u16, reserved_seq: u64) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&shard.to_le_bytes());
    bytes.extend_from_slice(&reserved_seq.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let target = copy_path(data_dir, shard);
    replace_durably(&target.with_extension("tmp"), &target, &bytes)
}

/// The shards that have a copy of their reservation in `data_dir`.
pub fn copied_shards(data_dir: &Path) -> Vec<u16> {
    let names = fs::read_dir(data_dir).into_iter().flatten().flatten();
    let mut shards: Vec<u16> = names
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?.strip_prefix("reserved-shard-")?.parse().ok()
        })
        .collect();
    shards.sort_unstable();
    shards
}

/// Checks that shard `shard`'s log in `dir` is where its copy says one was: a copy
/// whose shard has no `MANIFEST` (or no directory) means the log was removed, and its
/// ids are not known from it any more. Returns the copy's reservation (0 for none).
pub fn check_copy(data_dir: &Path, shard: u16, dir: &Path) -> Result<u64, String> {
    let Some(reserved) = read_copy(data_dir, shard)? else {
        return Ok(0);
    };
    if !dir.join(MANIFEST).exists() {
        let what = if dir.is_dir() {
            format!("{} has no {MANIFEST}", dir.display())
        } else {
            format!("{} is gone", dir.display())
        };
        return Err(format!(
            "shard {shard}: {what}, but {} says ids below {reserved} were reserved: its log \
             was removed or damaged. `epro-ingest retire-shard --shard {shard}` starts it \
             afresh past them",
            copy_path(data_dir, shard).display()
        ));
    }
    Ok(reserved)
}

/// Past every id the retired logs of shard `shard` used or reserved (1 for none).
pub fn retired_past(data_dir: &Path, shard: u16) -> u64 {
    let mut past = 1;
    for retired in retired_logs(data_dir).iter().filter(|r| r.shard == shard) {
        if let Ok(Some(m)) = Manifest::read(&retired.path, shard) {
            past = past.max(m.reserved_seq);
        }
        if let Some(last) = list_segments(&retired.path)
            .ok()
            .and_then(|s| s.last().cloned())
        {
            past = past.max(last.first_seq + 1);
        }
    }
    past
}

/// Where shard `shard` (its log in `dir`, damaged or gone) starts afresh: past every
/// record that still verifies, every segment name, both reservations that can still
/// be read, and the retired logs; one block further when neither reservation can.
pub fn next_after_retiring(data_dir: &Path, shard: u16, dir: &Path) -> u64 {
    let mut past = retired_past(data_dir, shard);
    salvage_shard(dir, shard, |r, _| past = past.max(r.seq + 1));
    if let Some(last) = list_segments(dir).ok().and_then(|s| s.last().cloned()) {
        // The last segment's name says its first id was given, as in [`retired_past`].
        past = past.max(last.first_seq + 1);
    }
    let reservations = [
        Manifest::read(dir, shard).map(|m| m.map(|m| m.reserved_seq)),
        read_copy(data_dir, shard),
    ];
    let known: Vec<u64> = reservations.into_iter().flatten().flatten().collect();
    match known.iter().max() {
        Some(&reserved) => past.max(reserved),
        None if past > 1 => past + RESERVE_BLOCK,
        None => past,
    }
}
