//! The offline readers over a data directory: `export` writes every record as one JSON
//! line, shard by shard in sequence order, with its hash; `verify` checks every record
//! and the hash chain, and reports (and checks saved heads, [`crate::log::heads`]).
//! Both only read, so both are safe beside a running server: a record being written at
//! the end of a shard's last segment is seen as an incomplete tail and left out.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::base::clock::format_rfc3339;
use crate::log::evidence::{check_copy, copied_shards, copy_path};
use crate::log::files::{list_segments, shard_dir};
use crate::log::heads::{Against, Head};
use crate::log::lost::Lost;
use crate::log::record::{Hash, Record};
use crate::log::recover::{scan_shard_from, Corruption, ScanProgress, ShardScan};
use crate::log::salvage::salvage_shard;

/// The record id: shard and sequence number, unique across shards and restarts.
pub fn record_id(shard: u16, seq: u64, out: &mut Vec<u8>) {
    out.push(b's');
    out.extend_from_slice(itoa::Buffer::new().format(shard).as_bytes());
    out.push(b'-');
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
}

/// The shard directories of a data directory, by shard number. An entry that looks
/// like a shard directory but is not named as this server names them (`shard-01`, a
/// copy `shard-1.bak`) is an error: its records would be silently ignored or doubled.
pub fn shard_dirs(data_dir: &Path) -> Result<Vec<(u16, PathBuf)>, String> {
    let mut shards = Vec::new();
    let entries =
        fs::read_dir(data_dir).map_err(|e| format!("cannot read {}: {e}", data_dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", data_dir.display()))?;
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix("shard-")) else {
            if name.to_string_lossy().starts_with("shard") {
                return Err(stray(&entry.path()));
            }
            continue;
        };
        match suffix.parse::<u16>() {
            Ok(n) if n.to_string() == suffix => shards.push((n, entry.path())),
            _ => return Err(stray(&entry.path())),
        }
    }
    shards.sort_unstable_by_key(|&(n, _)| n);
    Ok(shards)
}

fn stray(path: &Path) -> String {
    format!(
        "{}: not a shard directory this server writes (shard-<n>): a copy or a stray? \
         Move it out of the data directory",
        path.display()
    )
}

/// Lowercase hex of `bytes` (a hash, a body).
pub fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]);
    }
}

/// Writes one record, with its hash, as a JSON object line.
pub fn write_json_line(record: &Record<'_>, hash: &Hash, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":\"");
    record_id(record.shard, record.seq, out);
    out.extend_from_slice(b"\",\"shard\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.shard).as_bytes());
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.seq).as_bytes());
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(record.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"receivedAt\":\"");
    out.extend_from_slice(&format_rfc3339(record.received_ns));
    out.extend_from_slice(b"\",\"principal\":");
    let _ = serde_json::to_writer(&mut *out, record.principal);
    if let Some(key) = record.key {
        out.extend_from_slice(b",\"idempotencyKey\":");
        let _ = serde_json::to_writer(&mut *out, key);
    }
    out.extend_from_slice(b",\"sha256\":\"");
    hex(hash, out);
    out.extend_from_slice(b"\"");
    out.extend_from_slice(b",\"body\":");
    // Bodies were validated as JSON before being stored; should one not be, it is
    // exported as a string rather than breaking the line.
    if serde_json::from_slice::<serde::de::IgnoredAny>(record.body).is_ok() {
        out.extend(record.body.iter().filter(|&&b| b != b'\n' && b != b'\r'));
    } else {
        let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(record.body));
    }
    out.extend_from_slice(b"}\n");
}

/// The shards of `data_dir`, or why it is not a data directory (empty, or a shard
/// directory given in its place).
fn shards_of(data_dir: &Path) -> Result<Vec<(u16, PathBuf)>, String> {
    let shards = shard_dirs(data_dir)?;
    // A data directory whose every log was removed still has the reservations' copies.
    if shards.is_empty() && copied_shards(data_dir).is_empty() {
        let looks_like_shard = list_segments(data_dir).is_ok_and(|s| !s.is_empty());
        let hint = if looks_like_shard {
            "it holds segments: it is a shard directory; pass the data directory above it"
        } else {
            "no shard-<n> directory in it: is it the data directory (--data-dir of serve)?"
        };
        return Err(format!("{}: {hint}", data_dir.display()));
    }
    Ok(shards)
}

/// Hears how far `export` or `verify` has come: the shard being read and its scan's
/// progress (a salvage scan reports nothing until its shard is done).
pub type Progress<'p> = &'p mut dyn FnMut(u16, &ScanProgress);

/// Bytes of segment files in every shard of `data_dir`: the whole of a progress bar.
pub fn log_bytes(data_dir: &Path) -> u64 {
    let shards = shard_dirs(data_dir).unwrap_or_default();
    let segments = shards
        .iter()
        .flat_map(|(_, dir)| list_segments(dir).unwrap_or_default());
    segments
        .filter_map(|s| fs::metadata(&s.path).ok())
        .map(|m| m.len())
        .sum()
}

/// `epro-ingest export`: every record of every shard to `out`, shard by shard. A shard
/// whose log is corrupt stops at the damage, the others are exported in full, and the
/// result is an error naming each damaged shard. With `salvage`, every record that
/// still verifies is exported and each skipped byte range is reported on stderr.
pub fn export(
    data_dir: &Path,
    out: &mut impl Write,
    salvage: bool,
    progress: Progress<'_>,
) -> Result<u64, String> {
    let mut count = 0;
    let mut line = Vec::with_capacity(4096);
    let mut write_err = None;
    let mut damaged = Vec::new();
    for (shard, dir) in shards_of(data_dir)? {
        let mut emit = |record: &Record<'_>, hash: &Hash| {
            line.clear();
            write_json_line(record, hash, &mut line);
            if write_err.is_none() {
                if let Err(e) = out.write_all(&line) {
                    write_err = Some(e);
                }
            }
            count += 1;
        };
        if salvage {
            let found = salvage_shard(&dir, shard, &mut emit);
            for problem in found.problems {
                log::warn!("shard {shard}: {problem}");
            }
            for lost in found.lost {
                log::warn!("shard {shard}: LOST ids {lost}: record them as lost");
            }
        } else if let Err(problem) = scan_shard_from(
            &dir,
            shard,
            0,
            |r, at| emit(r, &at.hash),
            |p| progress(shard, p),
        ) {
            log::error!("shard {shard}: exported up to the damage: {problem}");
            damaged.push(shard);
        }
        if let Some(e) = write_err.take() {
            return Err(format!("writing export: {e}"));
        }
    }
    out.flush().map_err(|e| format!("writing export: {e}"))?;
    // A shard whose log was removed (its reservation's copy remains) is damaged too.
    for shard in copied_shards(data_dir) {
        let dir = shard_dir(data_dir, usize::from(shard));
        if let Err(gone) = check_copy(data_dir, shard, &dir) {
            log::error!("{gone}");
            if !damaged.contains(&shard) {
                damaged.push(shard);
            }
        }
    }
    if !damaged.is_empty() {
        return Err(format!(
            "shards {damaged:?} are damaged and were exported only up to the damage; \
             `export --salvage` exports every record that still verifies"
        ));
    }
    Ok(count)
}

/// What `verify` found in one shard: the strict scan's result, for a damaged shard
/// every problem a salvage scan finds past the first and the ids lost, and what became of its saved
/// head, if one was given.
pub struct ShardReport {
    pub shard: u16,
    pub result: Result<ShardScan, Corruption>,
    pub problems: Vec<Corruption>,
    /// The ids its damage took ([`crate::log::lost`]).
    pub lost: Vec<Lost>,
    pub against: Option<(Head, Against)>,
    /// The first record whose `receivedAt` is earlier than its predecessor's.
    pub backwards: Option<Backwards>,
}

/// A record received, by its `receivedAt`, before the record it follows in its shard:
/// the writer never stamps that, so it was forged or edited (or written by a version
/// that let a clock step through).
#[derive(Clone, Copy, Debug)]
pub struct Backwards {
    pub seq: u64,
    /// Its offset in its segment.
    pub offset: u64,
    pub received_ns: u64,
    pub previous_seq: u64,
    pub previous_ns: u64,
}

impl ShardReport {
    /// The shard's chain head as scanned (up to the damage, for a damaged shard).
    pub fn head(&self) -> Option<Head> {
        let scan = self.result.as_ref().ok()?;
        Some(
            scan.head
                .map_or(Head::empty(self.shard), |(seq, hash)| Head {
                    shard: self.shard,
                    seq,
                    hash,
                }),
        )
    }
}

/// `epro-ingest verify`: scans every shard, and checks each head in `saved` against
/// the log; the caller prints the reports and exits non-zero if any shard is damaged
/// or any saved head no longer holds. A saved head of a shard the data directory does
/// not have is an error.
pub fn verify(
    data_dir: &Path,
    saved: &[Head],
    progress: Progress<'_>,
) -> Result<Vec<ShardReport>, String> {
    let shards = shards_of(data_dir)?;
    if let Some(lost) = saved
        .iter()
        .find(|h| h.seq > 0 && !shards.iter().any(|(s, _)| *s == h.shard))
    {
        return Err(format!(
            "{}: no shard-{} directory, but a head was saved for it (seq {}): \
             its whole log is gone",
            data_dir.display(),
            lost.shard,
            lost.seq
        ));
    }
    // A shard whose reservation is copied but whose directory is gone is judged too.
    let mut shards = shards;
    for shard in copied_shards(data_dir) {
        if !shards.iter().any(|(s, _)| *s == shard) {
            shards.push((shard, shard_dir(data_dir, usize::from(shard))));
        }
    }
    Ok(shards
        .into_iter()
        .map(|(shard, dir)| {
            let saved = saved.iter().find(|h| h.shard == shard).copied();
            let mut found = None;
            let mut previous: Option<(u64, u64)> = None;
            let mut backwards = None;
            let copy = check_copy(data_dir, shard, &dir).map_err(|e| {
                let path = copy_path(data_dir, shard);
                match fs::read(&path) {
                    Err(io) if io.kind() != std::io::ErrorKind::NotFound => {
                        Corruption::unreadable(&path, io)
                    }
                    _ => Corruption::at(&path, 0, e),
                }
            });
            let result = copy.and_then(|_| {
                scan_shard_from(
                    &dir,
                    shard,
                    0,
                    |r, at| {
                        if saved.is_some_and(|h| h.seq == r.seq) {
                            found = Some(at.hash);
                        }
                        if let Some((previous_seq, previous_ns)) = previous {
                            if r.received_ns < previous_ns && backwards.is_none() {
                                backwards = Some(Backwards {
                                    seq: r.seq,
                                    offset: at.offset,
                                    received_ns: r.received_ns,
                                    previous_seq,
                                    previous_ns,
                                });
                            }
                        }
                        previous = Some((r.seq, r.received_ns));
                    },
                    |p| progress(shard, p),
                )
            });
            let (problems, lost) = match &result {
                Ok(_) => (Vec::new(), Vec::new()),
                Err(_) => {
                    let found = salvage_shard(&dir, shard, |_, _| {});
                    (found.problems, found.lost)
                }
            };
            let whole = result.is_ok();
            ShardReport {
                shard,
                result,
                problems,
                lost,
                against: saved.map(|h| (h, Against::judge(&h, found, whole))),
                backwards,
            }
        })
        .collect())
}
