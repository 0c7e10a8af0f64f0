//! The data directory as a whole: created private (0700), held by exactly one server
//! through an exclusive `flock` on `<data_dir>/LOCK` (which names the holder's pid),
//! and checked for shard logs this run would not serve; the logs `retire-shard` moved
//! aside. `export` and `verify` take no lock: they only read, so they work beside a
//! live server.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::base::exit::{Exit, Fatal};
use crate::log::files::shard_dirs;

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// The data directory, held: the lock lasts as long as this value (and the process).
pub struct DataDir {
    _lock: File,
}

/// Locks `dir` for a server of `shards` shards, creating it (0700) only when `init`
/// says so and its parent exists: a mistyped path is an error, not an empty store
/// whose ids start again at 1. Refuses a directory another process holds, one that is
/// not writable, and one holding the log of a shard this run would not start (its
/// records would silently go unserved).
pub fn open(dir: &Path, shards: usize, init: bool) -> Result<DataDir, Fatal> {
    let config = |message: String| Fatal::new(Exit::Config, message);
    if !dir.exists() {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        if !init {
            return Err(config(format!(
                "data dir {} does not exist: check --data-dir (or data_dir in the config \
                 file), or pass --init to create it",
                dir.display()
            )));
        }
        if parent.is_some_and(|p| !p.is_dir()) {
            return Err(config(format!(
                "cannot create data dir {}: its parent directory does not exist (--init \
                 creates the data directory itself, not its parents)",
                dir.display()
            )));
        }
        log::info!("--init: creating data dir {}", dir.display());
    }
    create_private(dir)
        .map_err(|e| config(format!("cannot create data dir {}: {e}", dir.display())))?;
    let lock = lock(dir)?;
    let existing = shard_dirs(dir).map_err(config)?;
    if let Some((n, path)) = existing.iter().find(|(n, _)| usize::from(*n) >= shards) {
        return Err(config(format!(
            "data dir holds the log of shard {n} ({}) but only {shards} shards would start: \
             start with at least {} shards",
            path.display(),
            n + 1
        )));
    }
    Ok(DataDir { _lock: lock })
}

/// Creates `dir` (and its parents) as 0700, or makes an existing one private.
pub fn create_private(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| e.to_string())?;
    make_private(dir)
}

/// Patient data: owner only. An existing directory open to others is closed, and said.
fn make_private(dir: &Path) -> Result<(), String> {
    let meta = fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private (chmod 0700): {e}", dir.display()))?;
        log::info!("{}: mode {mode:o} changed to 700", dir.display());
    }
    Ok(())
}

/// Takes the exclusive lock and writes this process's pid into the lock file.
pub(crate) fn lock(dir: &Path) -> Result<File, Fatal> {
    use nix::fcntl::{flock, FlockArg};
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            Fatal::new(
                Exit::Config,
                format!(
                    "data dir {} is not writable: {}: {e}",
                    dir.display(),
                    path.display()
                ),
            )
        })?;
    if flock(file.as_raw_fd(), FlockArg::LockExclusiveNonblock).is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.is_empty() { "unknown" } else { holder };
        return Err(Fatal::new(
            Exit::InUse,
            format!(
                "data dir {} is in use by another epro-ingest server (pid {holder}): \
                 one server per data directory",
                dir.display()
            ),
        ));
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(file)
}

/// A log `retire-shard` moved aside: `<data_dir>/retired-shard-<shard>-<unix seconds>`.
pub struct Retired {
    pub shard: u16,
    /// When it was retired: every record in it was received before.
    pub retired_ns: u64,
    pub path: std::path::PathBuf,
}

/// Every retired log in `data_dir`, oldest first.
pub fn retired_logs(data_dir: &Path) -> Vec<Retired> {
    let mut logs: Vec<Retired> = fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (shard, stamp) = name.strip_prefix("retired-shard-")?.split_once('-')?;
            Some(Retired {
                shard: shard.parse().ok()?,
                retired_ns: stamp.parse::<u64>().ok()?.saturating_mul(1_000_000_000),
                path: e.path(),
            })
        })
        .collect();
    logs.sort_by_key(|r| r.retired_ns);
    logs
}
