//! One open segment file, written through the page cache with glommio's
//! `BufferedFile`: a write group is one `write_at` of exactly its bytes and one
//! `fdatasync`, both on the executor's sleepable ring. O_DIRECT through `DmaFile` was
//! measured too: faster for the log alone, but glommio polls O_DIRECT completions on a
//! busy ring, and on the shard's pinned core that spinning slowed durable submits
//! sevenfold (README, "Why a buffered file"). The next segment is prepared ahead as a
//! zero-filled [`Spare`] (README, "Segments prepared ahead").

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, OpenOptions};

use crate::log::files::segment_name;
use crate::log::record::encode_header;

pub struct Segment {
    file: BufferedFile,
    pub path: PathBuf,
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
    file.pre_allocate(size, false)
        .await
        .map_err(|e| op_err("preallocating", path, e))?;
    Ok(file)
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
        let mut segment = Segment {
            file: spare.file,
            path: spare.path,
            pos: 0,
        };
        segment.write(&encode_header(shard, first_seq)).await?;
        segment.install(dir, first_seq).await?;
        Ok(segment)
    }

    /// Renames a segment whose header is synced to its name for `first_seq`, then
    /// syncs the directory: from here on it is part of the log.
    async fn install(&mut self, dir: &Path, first_seq: u64) -> io::Result<()> {
        let path = dir.join(segment_name(first_seq));
        self.file
            .rename(&path)
            .await
            .map_err(|e| op_err("renaming to", &path, e))?;
        self.path = path;
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

    /// The temporary file `tmp`: created, preallocated, its header written and synced.
    async fn create_as(tmp: &Path, shard: u16, first_seq: u64, size: u64) -> io::Result<Segment> {
        let file = create_preallocated(tmp, size).await?;
        let mut segment = Segment {
            file,
            path: tmp.to_path_buf(),
            pos: 0,
        };
        segment.write(&encode_header(shard, first_seq)).await?;
        Ok(segment)
    }

    /// Opens an existing segment to append after its valid records, which end at `pos`.
    pub async fn open(path: &Path, pos: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .buffered_open(path)
            .await
            .map_err(|e| op_err("opening", path, e))?;
        Ok(Segment {
            file,
            path: path.to_path_buf(),
            pos,
        })
    }

    /// Appends `bytes` durably: one write, then fdatasync.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = self
            .file
            .write_at(bytes.to_vec(), self.pos)
            .await
            .map_err(|e| op_err("writing", &self.path, e))?;
        if written != bytes.len() {
            return Err(op_err(
                "writing",
                &self.path,
                format!("short write: {written} of {}", bytes.len()),
            ));
        }
        self.file
            .fdatasync()
            .await
            .map_err(|e| op_err("fdatasync", &self.path, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    pub async fn close(self) -> io::Result<()> {
        let path = self.path;
        self.file
            .close()
            .await
            .map_err(|e| op_err("closing", &path, e))
    }
}

/// fsync of a directory, on glommio's blocking thread so the shard keeps serving.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| op_err("fsync of directory", &dir, e))
        })
        .await
}
