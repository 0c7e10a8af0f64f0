//! `epro-ingest export`: every record as one JSON line, shard by shard in sequence
//! order, with its hash. It only reads, so it is safe beside a running server: a record
//! being written at the end of a shard's last segment is seen as an incomplete tail and
//! left out.

use std::io::Write;
use std::path::Path;

use crate::base::clock::format_rfc3339;
use crate::log::evidence::{check_copy, copied_shards};
use crate::log::files::{shard_dir, shards_of};
use crate::log::id::{hex, record_id};
use crate::log::record::{Hash, Record};
use crate::log::recover::{scan_shard_from, Progress};
use crate::log::salvage::salvage_shard;

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
            export_salvaged(&dir, shard, &mut emit);
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
    removed_logs(data_dir, &mut damaged);
    if !damaged.is_empty() {
        return Err(format!(
            "shards {damaged:?} are damaged and were exported only up to the damage; \
             `export --salvage` exports every record that still verifies"
        ));
    }
    Ok(count)
}

/// Exports every record of shard `shard` in `dir` that still verifies, and warns of
/// each problem and of the ids lost.
fn export_salvaged(dir: &Path, shard: u16, emit: &mut impl FnMut(&Record<'_>, &Hash)) {
    let found = salvage_shard(dir, shard, emit);
    for problem in found.problems {
        log::warn!("shard {shard}: {problem}");
    }
    for lost in found.lost {
        log::warn!("shard {shard}: LOST ids {lost}: record them as lost");
    }
}

/// A shard whose log was removed (its reservation's copy remains) is damaged too: adds
/// each to `damaged`, saying why.
fn removed_logs(data_dir: &Path, damaged: &mut Vec<u16>) {
    for shard in copied_shards(data_dir) {
        let dir = shard_dir(data_dir, usize::from(shard));
        if let Err(gone) = check_copy(data_dir, shard, &dir) {
            log::error!("{gone}");
            if !damaged.contains(&shard) {
                damaged.push(shard);
            }
        }
    }
}
