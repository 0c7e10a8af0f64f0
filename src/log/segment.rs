//! One open segment file, written with O_DIRECT through glommio's `DmaFile`.
//!
//! O_DIRECT writes whole 4 KiB blocks, so the segment keeps the partial last block in
//! memory and every write starts at that block: the acknowledged bytes in it are
//! rewritten unchanged, followed by the new records and zero padding. A write is one
//! `write_at` and one `fdatasync`.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};

use crate::log::record::encode_header;
use crate::log::recover::segment_name;

const BLOCK: u64 = 4096;

pub struct Segment {
    file: DmaFile,
    pub path: PathBuf,
    /// End of the valid records.
    pub pos: u64,
    /// Bytes of the block that holds `pos`, from the block's start up to `pos`.
    tail: Vec<u8>,
}

fn op_err(op: &str, path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{op} {}: {e}", path.display()))
}

impl Segment {
    /// Creates segment `first_seq` of `shard` in `dir`: preallocated and its header
    /// synced under a temporary name, then renamed and the directory synced. A crash
    /// at any point leaves either no segment or a complete empty one (and perhaps a
    /// `.tmp` file, which recovery removes).
    pub async fn create(dir: &Path, shard: u16, first_seq: u64, size: u64) -> io::Result<Segment> {
        let path = dir.join(segment_name(first_seq));
        let tmp = dir.join(format!("{}.tmp", segment_name(first_seq)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&tmp)
            .await
            .map_err(|e| op_err("creating", &tmp, e))?;
        file.pre_allocate(size, false)
            .await
            .map_err(|e| op_err("preallocating", &tmp, e))?;
        let mut segment = Segment {
            file,
            path: tmp,
            pos: 0,
            tail: Vec::with_capacity(BLOCK as usize),
        };
        segment.write(&encode_header(shard, first_seq)).await?;
        segment
            .file
            .rename(&path)
            .await
            .map_err(|e| op_err("renaming to", &path, e))?;
        segment.path = path;
        sync_dir(dir).await?;
        Ok(segment)
    }

    /// Opens an existing segment to append after its valid records, which end at `pos`.
    pub async fn open(path: &Path, pos: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(|e| op_err("opening", path, e))?;
        let block_start = pos - pos % BLOCK;
        let mut tail = Vec::with_capacity(BLOCK as usize);
        if pos > block_start {
            let read = file
                .read_at_aligned(block_start, BLOCK as usize)
                .await
                .map_err(|e| op_err("reading", path, e))?;
            let want = (pos - block_start) as usize;
            if read.len() < want {
                return Err(op_err("reading", path, "short read of the last block"));
            }
            tail.extend_from_slice(&read[..want]);
        }
        Ok(Segment {
            file,
            path: path.to_path_buf(),
            pos,
            tail,
        })
    }

    /// Appends `bytes` durably: one write of the last block onwards, then fdatasync.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let base = self.pos - self.tail.len() as u64;
        let total = self.tail.len() + bytes.len();
        let write_len = total.div_ceil(BLOCK as usize) * BLOCK as usize;
        // From the executor's registered I/O memory while it lasts: no heap allocation.
        let mut buf = self.file.alloc_dma_buffer(write_len);
        let out = buf.as_bytes_mut();
        out[..self.tail.len()].copy_from_slice(&self.tail);
        out[self.tail.len()..total].copy_from_slice(bytes);
        out[total..].fill(0);
        let new_pos = self.pos + bytes.len() as u64;
        let new_block = (new_pos - new_pos % BLOCK - base) as usize;
        self.tail.clear();
        self.tail.extend_from_slice(&out[new_block..total]);
        let written = self
            .file
            .write_at(buf, base)
            .await
            .map_err(|e| op_err("writing", &self.path, e))?;
        if written != write_len {
            return Err(op_err(
                "writing",
                &self.path,
                format!("short write: {written} of {write_len}"),
            ));
        }
        self.file
            .fdatasync()
            .await
            .map_err(|e| op_err("fdatasync", &self.path, e))?;
        self.pos = new_pos;
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
