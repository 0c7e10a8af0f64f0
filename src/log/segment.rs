//! One open segment file. A write group is one `pwrite` of exactly its bytes and one
//! `fdatasync`, run back to back as one job on the shard's blocking thread (glommio's
//! pool: one thread, pinned to the shard's CPU), so the shard keeps serving while the
//! disk works. Through io_uring (glommio's `BufferedFile`) the same pair was two
//! operations, each handed by the kernel to a worker thread; as one job a durable
//! submit costs less CPU and its group syncs sooner (README, "Where the time goes").
//! The thread is shared with record reads and directory syncs, which are short; a
//! second thread was measured and made groups slower. O_DIRECT through `DmaFile` was
//! measured too: glommio polls O_DIRECT completions on a busy ring, and on the shard's
//! pinned core that spinning slowed durable submits sevenfold (README, "Why a buffered
//! file"). The next segment is prepared ahead as a zero-filled [`Spare`] (README,
//! "Segments prepared ahead") through io_uring: a long fill must not hold the thread
//! that write groups need.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glommio::io::{BufferedFile, OpenOptions};
use glommio::GlommioError;

use crate::log::files::{self, segment_name};
use crate::log::record::encode_header;
use crate::log::watch::{rescue, watch, Fault};

pub struct Segment {
    /// Shared with the blocking job in flight (one at a time: the flusher awaits it).
    file: Arc<File>,
    /// Shared with the blocking job too (a clone costs no allocation per group).
    pub path: Arc<Path>,
    /// End of the valid records.
    pub pos: u64,
}

/// The next segment's file, prepared ahead of a rotation: preallocated and its every
/// byte written with zeros and synced, under [`SPARE_NAME`], with no header yet.
///
/// Why: ext4 keeps fallocated space as unwritten extents, and the first write into one
/// changes metadata, so every group's fdatasync into a merely fallocated segment also
/// commits the journal. Into written zeros a group's write only overwrites data. The
/// zero-fill takes a while (64 MiB), so it runs beside the flusher, not in a rotation.
pub struct Spare {
    file: BufferedFile,
    path: PathBuf,
}

/// The spare's file name: a `.tmp`, which start-up removes and readers ignore.
pub const SPARE_NAME: &str = "spare.seg.tmp";

/// Zero-filling writes this much at a time.
const ZERO_CHUNK: usize = 1 << 20;

fn op_err(op: &str, path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{op} {}: {e}", path.display()))
}

/// Runs `job` on the shard's blocking thread; an error names its operation.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, (&'static str, io::Error)> + Send + 'static,
) -> Result<T, (&'static str, io::Error)> {
    glommio::executor().spawn_blocking(job).await
}

/// Opens an existing file for writing (and reading: a segment deleted under the server
/// is copied back from its open file), on the blocking thread.
async fn open_for_write(path: &Path) -> io::Result<File> {
    let owned = path.to_path_buf();
    blocking(move || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(owned)
            .map_err(|e| ("opening", e))
    })
    .await
    .map_err(|(op, e)| op_err(op, path, e))
}

/// A new file at `path` (0600, emptied if it existed), preallocated to `size` bytes.
async fn create_preallocated(path: &Path, size: u64) -> io::Result<BufferedFile> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .buffered_open(path)
        .await
        .map_err(|e| op_err("creating", path, e))?;
    file.pre_allocate(size, false).await.map_err(|e| {
        if is_unsupported(&e) {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "preallocating {}: the filesystem does not support fallocate, which the log \
                     needs to reserve its segments: put the data directory on one that does \
                     (ext4, xfs, btrfs): {e}",
                    path.display()
                ),
            )
        } else {
            op_err("preallocating", path, e)
        }
    })?;
    Ok(file)
}

/// Whether `e` is the filesystem's "not supported" (ext2, some network filesystems):
/// a lasting condition, unlike a full disk, so never worth a retry.
fn is_unsupported<T>(e: &GlommioError<T>) -> bool {
    match e {
        GlommioError::IoError(source) | GlommioError::EnhancedIoError { source, .. } => {
            source.raw_os_error() == Some(nix::libc::EOPNOTSUPP)
        }
        _ => false,
    }
}

/// Removes an unfinished file, best effort: start-up removes what is left.
async fn remove_quietly(path: &Path) {
    let path = path.to_path_buf();
    let _ = glommio::executor()
        .spawn_blocking(move || std::fs::remove_file(path))
        .await;
}

impl Spare {
    /// Prepares a spare of `size` bytes in `dir`. On failure (a full disk, say) the
    /// partial file is removed.
    pub async fn prepare(dir: &Path, size: u64) -> io::Result<Spare> {
        let path = dir.join(SPARE_NAME);
        let result = Spare::fill(&path, size).await;
        if result.is_err() {
            remove_quietly(&path).await;
        }
        result
    }

    /// Fails if `dir`'s filesystem cannot preallocate at all, tried on a one-page
    /// spare that is removed again: a log continued on such a filesystem then fails
    /// its start, not its first rotation. Any other failure (a full disk) is left for
    /// the rotation to wait out.
    pub async fn check_filesystem(dir: &Path) -> io::Result<()> {
        let path = dir.join(SPARE_NAME);
        let created = create_preallocated(&path, 4096).await;
        let result = match created {
            Ok(file) => {
                let _ = file.close().await;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Err(e),
            Err(_) => Ok(()),
        };
        remove_quietly(&path).await;
        result
    }

    async fn fill(path: &Path, size: u64) -> io::Result<Spare> {
        let file = create_preallocated(path, size).await?;
        let mut at = 0;
        while at < size {
            let len = ZERO_CHUNK.min((size - at) as usize);
            file.write_at(vec![0u8; len], at)
                .await
                .map_err(|e| op_err("zero-filling", path, e))?;
            at += len as u64;
        }
        file.fdatasync()
            .await
            .map_err(|e| op_err("fdatasync", path, e))?;
        Ok(Spare {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Segment {
    /// Turns `spare` into segment `first_seq` of `shard` in `dir`: its header written
    /// and synced, then the rename and the directory sync, as [`Segment::create`] does,
    /// with the same guarantee after a crash at any point.
    pub async fn from_spare(
        spare: Spare,
        dir: &Path,
        shard: u16,
        first_seq: u64,
    ) -> io::Result<Segment> {
        let mut segment = Segment::writable(spare.file, spare.path).await?;
        segment.write(&encode_header(shard, first_seq)).await?;
        segment.install(dir, first_seq).await?;
        Ok(segment)
    }

    /// The file that glommio created (and filled or preallocated), as an empty segment
    /// to write through a handle of its own.
    async fn writable(file: BufferedFile, path: PathBuf) -> io::Result<Segment> {
        let handle = open_for_write(&path).await?;
        file.close()
            .await
            .map_err(|e| op_err("closing", &path, e))?;
        Ok(Segment {
            file: Arc::new(handle),
            path: path.into(),
            pos: 0,
        })
    }

    /// Renames a segment whose header is synced to its name for `first_seq`, then
    /// syncs the directory: from here on it is part of the log.
    async fn install(&mut self, dir: &Path, first_seq: u64) -> io::Result<()> {
        let path = dir.join(segment_name(first_seq));
        let (from, to) = (self.path.to_path_buf(), path.clone());
        blocking(move || std::fs::rename(from, to).map_err(|e| ("renaming to", e)))
            .await
            .map_err(|(op, e)| op_err(op, &path, e))?;
        self.path = path.into();
        sync_dir(dir).await
    }

    /// Creates segment `first_seq` of `shard` in `dir`: preallocated and its header
    /// synced under a temporary name, then renamed and the directory synced. A crash
    /// at any point leaves either no segment or a complete empty one (and perhaps a
    /// `.tmp` file, which recovery removes). A failure (no space for the preallocation,
    /// say) removes the temporary file before it returns.
    pub async fn create(dir: &Path, shard: u16, first_seq: u64, size: u64) -> io::Result<Segment> {
        let tmp = dir.join(format!("{}.tmp", segment_name(first_seq)));
        let created = Segment::create_as(&tmp, shard, first_seq, size).await;
        let mut segment = match created {
            Ok(segment) => segment,
            Err(e) => {
                remove_quietly(&tmp).await;
                return Err(e);
            }
        };
        segment.install(dir, first_seq).await?;
        Ok(segment)
    }

    /// The temporary file `tmp`: created (0600, emptied if it existed), preallocated,
    /// its header written and synced.
    async fn create_as(tmp: &Path, shard: u16, first_seq: u64, size: u64) -> io::Result<Segment> {
        let file = create_preallocated(tmp, size).await?;
        let mut segment = Segment::writable(file, tmp.to_path_buf()).await?;
        segment.write(&encode_header(shard, first_seq)).await?;
        Ok(segment)
    }

    /// Opens an existing segment to append after its valid records, which end at `pos`.
    pub async fn open(path: &Path, pos: u64) -> io::Result<Segment> {
        Ok(Segment {
            file: Arc::new(open_for_write(path).await?),
            path: path.into(),
            pos,
        })
    }

    /// Appends `bytes` durably: one write, then fdatasync, as one blocking job.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        // Owned for the job, which may outlive this future if it is dropped.
        let group = bytes.to_vec();
        let at = self.pos;
        blocking(move || {
            // A short write is retried; an error (ENOSPC, EIO) ends the job.
            file.write_all_at(&group, at).map_err(|e| ("writing", e))?;
            file.sync_data().map_err(|e| ("fdatasync", e))
        })
        .await
        .map_err(|(op, e)| op_err(op, &self.path, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// As [`Segment::write`], unless the file was deleted, replaced or made read-only
    /// under the server since the last group: then nothing is written and the fault is
    /// returned. The check (an `fstat` of the open file, a `stat` of its path) runs in
    /// the same blocking job as the write.
    pub async fn write_watched(&mut self, bytes: &[u8]) -> io::Result<Option<Fault>> {
        let file = Arc::clone(&self.file);
        let group = bytes.to_vec();
        let (at, path) = (self.pos, Arc::clone(&self.path));
        let fault = blocking(move || {
            if let Some(fault) = watch(&file, &path)? {
                return Ok(Some(fault));
            }
            file.write_all_at(&group, at).map_err(|e| ("writing", e))?;
            file.sync_data().map_err(|e| ("fdatasync", e))?;
            Ok(None)
        })
        .await
        .map_err(|(op, e)| op_err(op, &self.path, e))?;
        if fault.is_none() {
            self.pos += bytes.len() as u64;
        }
        Ok(fault)
    }

    /// Whether the file was deleted, replaced or made read-only under the server.
    pub async fn check(&self) -> io::Result<Option<Fault>> {
        let (file, path) = (Arc::clone(&self.file), Arc::clone(&self.path));
        blocking(move || watch(&file, &path))
            .await
            .map_err(|(op, e)| op_err(op, &self.path, e))
    }

    /// After `fault`: saves the segment's records (its first `pos` bytes, read through
    /// the open file) and then `unwritten`, so that what was acknowledged is not lost
    /// with the open file. A deleted segment is written back under its own name (the
    /// log is whole again), a replaced one beside the file that replaced it, as
    /// `<name>.live-copy`; a read-only one is still in place, and only `unwritten` is
    /// appended to it. Returns where the records are.
    pub async fn rescue(&self, fault: Fault, unwritten: Vec<u8>) -> io::Result<PathBuf> {
        let (file, path, pos) = (Arc::clone(&self.file), Arc::clone(&self.path), self.pos);
        blocking(move || rescue(&file, &path, pos, fault, &unwritten))
            .await
            .map_err(|(op, e)| op_err(op, &self.path, e))
    }

    /// Closes the file on the blocking thread (every group is synced already).
    pub async fn close(self) {
        let file = self.file;
        glommio::executor().spawn_blocking(move || drop(file)).await;
    }
}

/// fsync of a directory, on glommio's blocking thread so the shard keeps serving.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || files::sync_dir(&dir))
        .await
}
