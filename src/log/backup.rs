//! `backup`: a consistent copy of a data directory, taken beside a running server; and
//! `restore`: a backup put in place as a data directory that never gives an id twice.
//!
//! A backup reads each shard's manifest first (replaced atomically, so it is one
//! consistent list), then copies the segments it lists: every sealed one whole, and
//! the live one as it stands. Whatever of the live segment's last write group the copy
//! caught half-written is zeroed in the copy, exactly as recovery cuts a torn tail, so
//! the backup ends at a record boundary and `verify` accepts it. Retired logs and the
//! node's small files (`ship-node`, `admin.token`) come along; the lock does not.
//!
//! A restored node has lost what the old one stored after the backup, and the old one
//! may have given ids past the backup's reservation. So `restore` raises every shard's
//! reservation by [`RESTORE_GAP`] plus the time of the restore in microseconds: new
//! records start that far past anything in the backup, never at an id the old node, or
//! an earlier restore of the same backup, may have used. The restored directory is
//! built beside the target and renamed into place whole. A backup refuses a data
//! directory whose shard log was removed while its reservation's copy remains.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::Path;

use crate::log::evidence::{check_copy, copied_shards};
use crate::log::files::{self, segment_name, shard_dir, shard_dirs};
use crate::log::manifest::{Manifest, MANIFEST};
use crate::log::verify;

/// Ids a restored shard skips past its backup, besides the restore's stamp: 2^48, more
/// than a node can give out in years (9 years at a million records a second). With
/// the stamp (about 2^51 today) a chain of about 8,000 restores fits in 64 bits.
pub const RESTORE_GAP: u64 = 1 << 48;

/// The same backup may be restored twice (the node restored from it failed too): each
/// restore therefore also skips the microseconds since the epoch at its start, so a
/// later restore starts past every id an earlier one of the same backup could have
/// given unless a shard gave more than one id a microsecond in between (10x any
/// measured rate), or the clock was set back between the two.
fn restore_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX >> 8))
}

/// Files of the data directory itself that a backup keeps (the lock is not one).
const NODE_FILES: [&str; 2] = ["ship-node", "admin.token"];

/// What a backup holds, per shard: records and the sequence number after them.
pub struct Copied {
    pub shard: u16,
    pub records: u64,
    pub next_seq: u64,
    /// Bytes of a half-written group zeroed at the end of the copy.
    pub cut: u64,
}

/// An I/O error as a message naming the operation and the path.
fn io_err<'p>(op: &'static str, path: &'p Path) -> impl Fn(io::Error) -> String + 'p {
    move |e| format!("{op} {}: {e}", path.display())
}

fn new_private_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io_err("creating", dir))
}

/// Copies `from` to `to` and syncs the copy.
fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync of", to))
}

/// Copies the directory tree `from` into the new directory `to` (files and
/// directories only), synced.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    new_private_dir(to)?;
    for entry in fs::read_dir(from).map_err(io_err("reading", from))? {
        let entry = entry.map_err(io_err("reading", from))?;
        let kind = entry
            .file_type()
            .map_err(io_err("reading", &entry.path()))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            copy_file(&entry.path(), &target)?;
        }
    }
    files::sync_dir(to).map_err(|e| e.to_string())
}

/// `epro-ingest backup`: copies `data_dir` (running or not) into `to`, which must not
/// exist yet, and checks the copy as `verify` does.
pub fn backup(data_dir: &Path, to: &Path) -> Result<Vec<Copied>, String> {
    if to.exists() {
        return Err(format!(
            "{} exists: a backup goes into a new directory",
            to.display()
        ));
    }
    let shards = shard_dirs(data_dir)?;
    if shards.is_empty() {
        return Err(format!("{}: no shard directories", data_dir.display()));
    }
    // A shard whose log was removed is known only from its reservation's copy; a backup
    // without it would restore that shard at id 1.
    for shard in copied_shards(data_dir) {
        check_copy(data_dir, shard, &shard_dir(data_dir, usize::from(shard)))
            .map_err(|e| format!("not backing up {}: {e}", data_dir.display()))?;
    }
    new_private_dir(to)?;
    for (shard, dir) in &shards {
        let manifest = Manifest::read(dir, *shard)?.ok_or_else(|| {
            format!(
                "{}: no {MANIFEST}: not a log this version writes",
                dir.display()
            )
        })?;
        let copy = to.join(dir.file_name().unwrap_or_default());
        new_private_dir(&copy)?;
        for segment in &manifest.segments {
            let name = segment_name(segment.first_seq);
            copy_file(&dir.join(&name), &copy.join(&name))?;
        }
        manifest
            .write(&copy)
            .map_err(|e| format!("writing the manifest of the copy of shard {shard}: {e}"))?;
    }
    for entry in fs::read_dir(data_dir).map_err(io_err("reading", data_dir))? {
        let entry = entry.map_err(io_err("reading", data_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("retired-shard-") {
            copy_tree(&entry.path(), &to.join(&*name))?;
        } else if NODE_FILES.contains(&&*name) {
            copy_file(&entry.path(), &to.join(&*name))?;
        }
    }
    files::sync_dir(to).map_err(|e| e.to_string())?;
    cut_half_written_groups(to)
}

/// Zeroes a half-written last group in each shard of the copy `to`, then checks that
/// every shard verifies with no tail left to cut.
fn cut_half_written_groups(to: &Path) -> Result<Vec<Copied>, String> {
    let mut cuts = Vec::new();
    let mut copied = Vec::new();
    for report in verify::verify(to, &[], &mut |_, _| {})? {
        let scan = report.result.map_err(|problem| {
            format!("the copy of shard {} is damaged: {problem}", report.shard)
        })?;
        copied.push(Copied {
            shard: report.shard,
            records: scan.records,
            next_seq: scan.next_seq,
            cut: 0,
        });
        if let Some(torn) = scan.torn {
            let len = torn.dirty_end.saturating_sub(torn.offset);
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&torn.path)
                .map_err(io_err("opening", &torn.path))?;
            file.write_all_at(&vec![0; len as usize], torn.offset)
                .and_then(|()| file.sync_data())
                .map_err(io_err("zeroing the half-written tail of", &torn.path))?;
            cuts.push((report.shard, len));
        }
    }
    // Only a copy whose tail was zeroed needs a second look.
    if cuts.is_empty() {
        return Ok(copied);
    }
    copied.clear();
    for report in verify::verify(to, &[], &mut |_, _| {})? {
        let shard = report.shard;
        let scan = report
            .result
            .map_err(|problem| format!("the copy of shard {shard} is damaged: {problem}"))?;
        if scan.torn.is_some() {
            return Err(format!(
                "the copy of shard {shard} still ends in a torn tail"
            ));
        }
        copied.push(Copied {
            shard,
            records: scan.records,
            next_seq: scan.next_seq,
            cut: cuts.iter().find(|(s, _)| *s == shard).map_or(0, |c| c.1),
        });
    }
    Ok(copied)
}

/// `epro-ingest restore`: copies the backup `from` into the new data directory `to`
/// (its parent must exist) and raises every shard's reservation past [`RESTORE_GAP`]
/// more ids. Returns each shard and the first id it will give.
pub fn restore(from: &Path, to: &Path) -> Result<Vec<(u16, u64)>, String> {
    if to.exists() {
        return Err(format!(
            "{} exists: restore into a new directory (move the old one aside)",
            to.display()
        ));
    }
    let reports = verify::verify(from, &[], &mut |_, _| {})?;
    let stamp = restore_stamp();
    let mut next = Vec::new();
    for report in reports {
        let scan = report.result.map_err(|problem| {
            format!(
                "{} is not a whole backup: shard {}: {problem}",
                from.display(),
                report.shard
            )
        })?;
        next.push((report.shard, scan.resume_seq() + RESTORE_GAP + stamp));
    }
    // Built beside `to` and renamed into place once every reservation is raised: a
    // crash or an error part-way leaves no `to` that could start below ids the old
    // node gave.
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    let building = to.with_file_name(format!(".{name}.restoring-{}", std::process::id()));
    copy_tree(from, &building)?;
    for (shard, dir) in shard_dirs(&building)? {
        let mut manifest = Manifest::read(&dir, shard)?
            .ok_or_else(|| format!("{}: no {MANIFEST}", dir.display()))?;
        let first = next
            .iter()
            .find(|(s, _)| *s == shard)
            .map_or(RESTORE_GAP, |n| n.1);
        manifest.reserved_seq = first;
        manifest
            .write(&dir)
            .map_err(|e| format!("writing the manifest of shard {shard}: {e}"))?;
    }
    fs::rename(&building, to)
        .map_err(|e| format!("renaming {} to {}: {e}", building.display(), to.display()))?;
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty());
    files::sync_dir(parent.unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
    Ok(next)
}
