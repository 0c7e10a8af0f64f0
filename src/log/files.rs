//! A shard directory's files by name: segments (`<first seq, 20 digits>.seg`), the
//! shard directories of a data directory, and the temporary files a crash can leave.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Replaces `target` with `bytes`, durably: written and synced under `tmp`, renamed
/// over `target`, and the directory holding it synced. A crash leaves the old file or
/// the new one (and perhaps `tmp`).
pub fn replace_durably(tmp: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |op: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{op} {}: {e}", p.display()))
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| err("creating", tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_data())
        .map_err(|e| err("writing", tmp, e))?;
    fs::rename(tmp, target).map_err(|e| err("renaming to", target, e))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("fsync of directory", dir, e))
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
