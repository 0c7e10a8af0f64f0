//! `epro-ingest retire-shard`: moves a shard's damaged log aside, as evidence, and
//! starts the shard afresh past every id the old log used or reserved.
//!
//! Atomic: the new log is prepared first, complete, under the name the old one will
//! take (`<data_dir>/retired-shard-<n>-<unix seconds>`: a directory holding only a
//! `MANIFEST` that reserves the ids past every piece of evidence, with the copy of the
//! reservation updated to match); then one `renameat2(RENAME_EXCHANGE)` swaps it with
//! `shard-<n>`, and the data directory is synced. A crash or an error (a full disk) at
//! any point before the swap leaves the shard's log as it was, with at most the ids
//! skipped ahead: perhaps a `retired-shard-<n>-<time>` holding no record whose
//! `MANIFEST` reserves past the old log (the next start reads it as a retired log with
//! nothing in it), and perhaps the reservation's copy already raised. Ids only ever
//! skip, never repeat. After the swap, the new state whole.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::log::datadir::lock;
use crate::log::evidence::{next_after_retiring, read_copy};
use crate::log::files::{self, shard_dir};
use crate::log::manifest::Manifest;

/// What `retire-shard` did.
pub struct Retired {
    /// Where the old log now is (none when its directory was already gone).
    pub moved_to: Option<PathBuf>,
    /// The first id the shard gives from now on.
    pub next_seq: u64,
}

/// Retires shard `shard`'s log in `data_dir`. Refused while a server holds the
/// directory, and for a shard of which nothing is known (no directory, no copy of a
/// reservation).
pub fn retire_shard(data_dir: &Path, shard: u16) -> Result<Retired, String> {
    let _lock = lock(data_dir)?;
    let dir = shard_dir(data_dir, usize::from(shard));
    let present = dir.is_dir();
    if !present && read_copy(data_dir, shard)?.is_none() {
        return Err(format!("{}: no such shard directory", dir.display()));
    }
    let next_seq = next_after_retiring(data_dir, shard, &dir);
    fault_point(1)?;
    let prepared = prepare(data_dir, shard, next_seq)?;
    let swapped = swap(data_dir, &prepared, &dir, present);
    if let Err(e) = swapped {
        // Nothing of the old log has moved: only the prepared directory goes.
        let _ = fs::remove_dir_all(&prepared);
        return Err(e);
    }
    fault_point(5)?;
    files::sync_dir(data_dir).map_err(|e| e.to_string())?;
    Ok(Retired {
        moved_to: present.then_some(prepared),
        next_seq,
    })
}

/// The new log, complete: a private directory under a retired log's name, holding a
/// `MANIFEST` that reserves the ids below `next_seq`, synced with its entry in
/// `data_dir`. On an error, what was made is removed.
fn prepare(data_dir: &Path, shard: u16, next_seq: u64) -> Result<PathBuf, String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // A later second for a name taken already (two retirements within a second).
    let mut at = stamp;
    let path = loop {
        let path = data_dir.join(format!("retired-shard-{shard}-{at}"));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => break path,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => at += 1,
            Err(e) => return Err(format!("creating {}: {e}", path.display())),
        }
    };
    let made = fault_point(2)
        .and_then(|()| {
            Manifest::new(shard, next_seq)
                .write(&path)
                .map_err(|e| format!("writing the new manifest of shard {shard}: {e}"))
        })
        .and_then(|()| fault_point(3))
        .and_then(|()| files::sync_dir(data_dir).map_err(|e| e.to_string()))
        .and_then(|()| fault_point(4));
    match made {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_dir_all(&path);
            Err(e)
        }
    }
}

/// Puts the prepared log in the shard's place, in one rename: exchanged with the old
/// log (which takes the prepared one's name), or moved in where there is none.
fn swap(data_dir: &Path, prepared: &Path, dir: &Path, present: bool) -> Result<(), String> {
    use nix::fcntl::{renameat2, RenameFlags};
    let flags = if present {
        RenameFlags::RENAME_EXCHANGE
    } else {
        RenameFlags::RENAME_NOREPLACE
    };
    renameat2(None, prepared, None, dir, flags).map_err(|e| {
        format!(
            "swapping {} with {} (renameat2 in {}): {e}",
            prepared.display(),
            dir.display(),
            data_dir.display()
        )
    })
}

/// A test seam: with `EPRO_TEST_RETIRE_FAULT=crash:<k>` the process exits at step `k`
/// as if killed; with `fail:<k>` the step fails as a full disk would. Only in builds
/// with the `test-seams` feature.
#[cfg(feature = "test-seams")]
fn fault_point(step: u32) -> Result<(), String> {
    let seam = std::env::var("EPRO_TEST_RETIRE_FAULT").unwrap_or_default();
    match seam.split_once(':') {
        Some(("crash", k)) if k == step.to_string() => std::process::exit(86),
        Some(("fail", k)) if k == step.to_string() => {
            Err(format!("step {step}: No space left on device (test seam)"))
        }
        _ => Ok(()),
    }
}

#[cfg(not(feature = "test-seams"))]
fn fault_point(_step: u32) -> Result<(), String> {
    Ok(())
}
