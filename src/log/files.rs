//! A shard directory's files by name: segments (`<first seq, 20 digits>.seg`), the
//! shard directories of a data directory (and the bytes of their segments), and the
//! temporary files a crash can leave. Also the one directory fsync ([`sync_dir`]) that
//! every writer of a directory (the log, backup, retire-shard, ship's node id) uses.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::log::evidence::copied_shards;

/// Replaces `target` with `bytes`, durably: written and synced under `tmp`, renamed
/// over `target`, and the directory holding it synced. A crash leaves the old file or
/// the new one (and perhaps `tmp`).
pub fn replace_durably(tmp: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| with_path("creating", tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_data())
        .map_err(|e| with_path("writing", tmp, e))?;
    fs::rename(tmp, target).map_err(|e| with_path("renaming to", target, e))?;
    sync_dir(target.parent().unwrap_or(Path::new(".")))
}

/// Syncs the directory `dir`, so the names created, renamed or removed in it last.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path("fsync of directory", dir, e))
}

/// `e`, of the same kind, saying which operation on which path failed:
/// `<op> <path>: <e>`.
pub fn with_path(op: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

/// A segment file of a shard.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub first_seq: u64,
}

/// Segment files are named by their first sequence number, 20 digits, so names sort
/// in log order.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

pub fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

/// The segment files of a shard directory, in order. A missing directory has none.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("listing {}: {e}", dir.display()),
            ))
        }
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(first_seq) = stem.parse::<u64>() {
            segments.push(SegmentFile {
                path: entry.path(),
                first_seq,
            });
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Removes the temporary files this server creates and a crash can leave behind:
/// `<20 digits>.seg.tmp` (a segment whose creation was interrupted before its rename;
/// it holds no record) and `MANIFEST.tmp`. Nothing else is touched. Returns how many.
pub fn remove_unfinished(dir: &Path) -> io::Result<usize> {
    let ours = |name: &str| {
        name == "MANIFEST.tmp"
            || name == super::segment::SPARE_NAME
            || name
                .strip_suffix(".seg.tmp")
                .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(ours) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
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

/// The shards of `data_dir`, or why it is not a data directory (empty, or a shard
/// directory given in its place).
pub fn shards_of(data_dir: &Path) -> Result<Vec<(u16, PathBuf)>, String> {
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
