//! The live segment watched: what was done to its file from outside the server
//! (deleted, replaced, made read-only), found before each write group, every second
//! while idle, and at the stop; then the shard's writes stop and the records are saved
//! from the still-open file ([`Segment::rescue`]). A check is an `fstat` of the open
//! file and a `stat` of its name, in the write group's blocking job.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::error;

use super::manifest::MANIFEST;
use super::segment::Segment;
use super::Durability;
use super::Log;

/// A rescue copies this much at a time.
const COPY_CHUNK: usize = 1 << 20;

/// Something done to the live segment's file from outside the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Unlinked, or renamed away: its name holds nothing.
    Deleted,
    /// Its name now holds another file (renamed over).
    Replaced,
    /// Its write permission was taken away.
    ReadOnly,
}

impl Fault {
    /// What happened, for the log line, `/readyz` and the 503 of a refused write.
    pub fn says(self) -> &'static str {
        match self {
            Fault::Deleted => "its live segment was deleted or moved away",
            Fault::Replaced => "its live segment was replaced by another file",
            Fault::ReadOnly => "its live segment was made read-only",
        }
    }
}

impl Log {
    /// The live segment suffered `fault`: no more records are taken, and what the
    /// segment holds is saved (see [`Segment::rescue`]) together with `rest` and what
    /// is pending, if those were acknowledged already (durability `async`). With
    /// `sync` they were not: their writers get a 503. Says so in one line.
    pub(super) async fn stop_writes(&self, segment: &Segment, fault: Fault, rest: &[u8]) {
        let (unwritten, records) = {
            let mut state = self.state.borrow_mut();
            state.fault = Some(fault);
            let records = state.next_seq - 1 - state.durable_seq;
            let mut unwritten = Vec::new();
            if self.durability == Durability::Async {
                unwritten.extend_from_slice(rest);
                unwritten.extend_from_slice(&state.pending.bytes);
            }
            state.pending.clear();
            (unwritten, records)
        };
        self.metrics.borrow_mut().writes_stopped = true;
        let acknowledged = if unwritten.is_empty() {
            String::new()
        } else {
            format!(" and {records} acknowledged records not yet written")
        };
        let path = segment.path.display();
        let mut rescued = segment.rescue(fault, unwritten).await;
        // With its directory gone, the manifest went too: written again from memory,
        // so the next start finds the shard whole (or names the segments that are gone).
        if rescued.is_ok() && !self.dir.join(MANIFEST).exists() {
            let manifest = self.manifest.borrow().clone();
            if let Err(e) = self.write_manifest(manifest).await {
                rescued = Err(e);
            }
        }
        match rescued {
            Ok(saved) => error!(
                "shard {}: {} ({path}): writes to this shard are stopped until a restart; \
                 its records{acknowledged} are saved in {}",
                self.shard,
                fault.says(),
                saved.display()
            ),
            Err(e) => error!(
                "shard {}: {} ({path}): writes to this shard are stopped until a restart; \
                 saving its records{acknowledged} failed: {e}",
                self.shard,
                fault.says()
            ),
        }
    }
}

/// Whether `file`, open as the segment `path`, still is that segment and writable.
pub(super) fn watch(file: &File, path: &Path) -> Result<Option<Fault>, (&'static str, io::Error)> {
    let open = file.metadata().map_err(|e| ("fstat", e))?;
    let named = match std::fs::metadata(path) {
        Ok(named) => named,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Fault::Deleted)),
        Err(e) => return Err(("stat", e)),
    };
    if (named.dev(), named.ino()) != (open.dev(), open.ino()) {
        return Ok(Some(Fault::Replaced));
    }
    // The name holds the open file, which has no link left: unlinked and linked anew
    // elsewhere cannot give this, but a hard link removed can; say deleted.
    if open.nlink() == 0 {
        return Ok(Some(Fault::Deleted));
    }
    if open.mode() & 0o222 == 0 {
        return Ok(Some(Fault::ReadOnly));
    }
    Ok(None)
}

/// [`Segment::rescue`], on the blocking thread.
pub(super) fn rescue(
    file: &File,
    path: &Path,
    pos: u64,
    fault: Fault,
    unwritten: &[u8],
) -> Result<PathBuf, (&'static str, io::Error)> {
    if fault == Fault::ReadOnly {
        // The open file still writes: what is acknowledged goes where it belongs.
        file.write_all_at(unwritten, pos)
            .map_err(|e| ("writing", e))?;
        file.sync_data().map_err(|e| ("fdatasync", e))?;
        return Ok(path.to_path_buf());
    }
    // The whole shard directory may be what was deleted: made again (0700, as at start).
    if let Some(dir) = path.parent().filter(|dir| !dir.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| ("creating the directory of", e))?;
    }
    let tmp = path.with_extension("seg.tmp");
    write_copy(file, &tmp, pos, unwritten)?;
    // Never over a file that is there: a replacement is left as it was found.
    let saved = match fault {
        Fault::Deleted => path.to_path_buf(),
        _ => path.with_extension("seg.live-copy"),
    };
    let linked = std::fs::hard_link(&tmp, &saved).map_err(|e| ("linking the copy", e));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    if let Some(dir) = path.parent() {
        super::files::sync_dir(dir).map_err(|e| ("saving", e))?;
    }
    Ok(saved)
}

/// Writes a durable copy of the open segment `file` to `tmp`: its first `pos` bytes,
/// then `unwritten`, as large as the segment (the manifest lists it at its full size).
fn write_copy(
    file: &File,
    tmp: &Path,
    pos: u64,
    unwritten: &[u8],
) -> Result<(), (&'static str, io::Error)> {
    let copy = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| ("creating", e))?;
    let mut chunk = vec![0u8; COPY_CHUNK];
    let mut at = 0;
    while at < pos {
        let len = COPY_CHUNK.min((pos - at) as usize);
        file.read_exact_at(&mut chunk[..len], at)
            .map_err(|e| ("reading the open segment", e))?;
        copy.write_all_at(&chunk[..len], at)
            .map_err(|e| ("writing a copy", e))?;
        at += len as u64;
    }
    copy.write_all_at(unwritten, pos)
        .map_err(|e| ("writing a copy", e))?;
    // The manifest lists the segment at its full size: keep it.
    let size = file.metadata().map_err(|e| ("fstat", e))?.len();
    copy.set_len(size.max(pos + unwritten.len() as u64))
        .map_err(|e| ("sizing a copy", e))?;
    copy.sync_all().map_err(|e| ("fsync of a copy", e))
}
