//! Opening a shard's log at start-up (blocking; the shard runs it on its blocking
//! pool): check that the log is where the evidence of its ids says one is, remove
//! unfinished segment creations, scan against the manifest, cut a torn
//! tail (keeping a copy of the bytes cut), and write this run's manifest, which
//! reserves the first block of ids and clears the clean-shutdown mark, before any
//! record is accepted. A last segment that will not be continued gives back the disk
//! blocks of its unused preallocated space.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::log::datadir::create_private;
use crate::log::evidence::{check_copy, retired_past};
use crate::log::files::{list_segments, remove_unfinished};
use crate::log::manifest::{Listed, Manifest, MANIFEST};
use crate::log::record::{encode_header, Record, GENESIS, HEADER_LEN, VERSION};
use crate::log::recover::{scan_shard_from, ScanProgress, ShardScan, TornTail};

/// A shard's log, ready for its writer.
pub struct Opened {
    pub scan: ShardScan,
    /// The manifest as now on disk.
    pub manifest: Manifest,
    /// The sequence number of the next record.
    pub next_seq: u64,
    /// The segment to continue and where its records end; `None` when the next record
    /// starts a new segment (no segment yet, ids were skipped after a crash, or the last
    /// segment is of an older version).
    pub last: Option<(PathBuf, u64)>,
    /// Where the bytes of a cut torn tail were saved.
    pub torn_copy: Option<PathBuf>,
}

impl Opened {
    /// Where the writer continues.
    pub fn resume(&self) -> crate::log::Resume {
        crate::log::Resume {
            log_end: self.scan.next_seq,
            next_seq: self.next_seq,
            chain: self.scan.head.map_or(GENESIS, |(_, hash)| hash),
            head_seq: self.scan.head.map_or(0, |(seq, _)| seq),
        }
    }
}

/// Opens shard `shard`'s log in `dir` (created, 0700; its parent is the data
/// directory), calling `each` for every record and `progress` as the scan goes. The
/// next id is past every piece of evidence ([`crate::log::evidence`]); the manifest
/// reserves `reserve_block` ids from it ([`crate::log::manifest::RESERVE_BLOCK`] but in
/// tests).
pub fn open_shard(
    dir: &Path,
    shard: u16,
    reserve_block: u64,
    mut each: impl FnMut(&Record<'_>, u64),
    progress: impl FnMut(&ScanProgress),
) -> Result<Opened, String> {
    let data_dir = dir.parent().unwrap_or(Path::new("."));
    let copied = check_copy(data_dir, shard, dir)?;
    create_private(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    remove_unfinished(dir).map_err(|e| format!("cleaning {}: {e}", dir.display()))?;
    let scan = scan_shard_from(dir, shard, 0, |r, at| each(r, at.offset), progress).map_err(|c| {
        format!(
            "shard {shard}: corrupt log: {c}. Refusing to start; see README \"Recovering from a corrupt log\""
        )
    })?;
    let torn_copy = match &scan.torn {
        Some(torn) => Some(
            cut_torn_tail(torn)
                .map_err(|e| format!("cutting torn tail of {}: {e}", torn.path.display()))?,
        ),
        None => None,
    };
    make_segments_private(dir)?;
    let next_seq = resume_seq(data_dir, shard, &scan, copied);
    let last = continued_segment(shard, &scan, next_seq)?;
    let manifest = Manifest {
        shard,
        reserved_seq: next_seq + reserve_block,
        clean_end: None,
        segments: listed_segments(dir, &scan)?,
    };
    manifest
        .write(dir)
        .map_err(|e| format!("writing the manifest of shard {shard}: {e}"))?;
    if let (Some((segment, end)), None) = (&scan.last, &last) {
        release_unused(shard, &segment.path, *end);
    }
    Ok(Opened {
        scan,
        manifest,
        next_seq,
        last,
        torn_copy,
    })
}

/// Every segment of the shard is readable and writable by the server alone (0600).
fn make_segments_private(dir: &Path) -> Result<(), String> {
    for segment in list_segments(dir).map_err(|e| e.to_string())? {
        fs::set_permissions(&segment.path, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod 600 {}: {e}", segment.path.display()))?;
    }
    Ok(())
}

/// The next id: past every piece of evidence ([`crate::log::evidence`]), not only the
/// manifest's (`copied`: past the reservation's copy), saying so when that is further.
fn resume_seq(data_dir: &Path, shard: u16, scan: &ShardScan, copied: u64) -> u64 {
    let next_seq = scan
        .resume_seq()
        .max(copied)
        .max(retired_past(data_dir, shard));
    if next_seq > scan.resume_seq() {
        log::warn!(
            "shard {shard}: ids continue at {next_seq}, past the {MANIFEST}'s reservation \
             ({}), from its copy or a retired log",
            scan.resume_seq()
        );
    }
    next_seq
}

/// The last segment to continue at `next_seq`, and where its records end; `None`
/// when the next record starts a new segment.
///
/// A segment of an older version with records is never continued: new records
/// would not match its version (unchained, version 1), or an older binary would
/// take a record kind it does not know for damage (version 2). One without any
/// becomes a segment of the current version (a new one would take its name: the
/// same first sequence number).
fn continued_segment(
    shard: u16,
    scan: &ShardScan,
    next_seq: u64,
) -> Result<Option<(PathBuf, u64)>, String> {
    match &scan.last {
        Some((segment, end)) if next_seq == scan.next_seq => {
            let empty = *end == HEADER_LEN as u64;
            let current = scan.last_version == VERSION;
            if !current && empty {
                upgrade_empty_segment(&segment.path, shard, segment.first_seq)
                    .map_err(|e| format!("upgrading {}: {e}", segment.path.display()))?;
            }
            Ok((current || empty).then(|| (segment.path.clone(), *end)))
        }
        _ => Ok(None),
    }
}

/// A last segment that is not continued (ids were skipped after a crash, or it is of
/// an older version) gives back the disk blocks of its unused preallocated space, or
/// every crash of a crash loop would leave a whole segment's worth behind. A hole reads
/// as the zeros it replaces and the size stays: nothing a reader (ship, verify, export,
/// possibly running now) or the manifest sees changes.
fn release_unused(shard: u16, path: &Path, end: u64) {
    if let Err(e) = release_tail(path, end) {
        log::warn!(
            "shard {shard}: could not give back the unused space of {}: {e}",
            path.display()
        );
    }
}

/// The segments this run's manifest lists: the old manifest's and any created just
/// before a crash, or (a log from before manifests) every segment, as large as it is.
fn listed_segments(dir: &Path, scan: &ShardScan) -> Result<Vec<Listed>, String> {
    if let Some(manifest) = &scan.manifest {
        let mut listed = manifest.segments.clone();
        listed.extend(&scan.unlisted);
        return Ok(listed);
    }
    let mut listed = Vec::new();
    for segment in list_segments(dir).map_err(|e| e.to_string())? {
        let size = fs::metadata(&segment.path)
            .map_err(|e| format!("cannot read {}: {e}", segment.path.display()))?
            .len();
        listed.push(Listed {
            first_seq: segment.first_seq,
            size,
        });
    }
    Ok(listed)
}

/// Punches a hole in a segment that will not be written again, from the first block
/// after the end of its records (the rest is zeros: preallocated space).
fn release_tail(path: &Path, end: u64) -> io::Result<()> {
    use nix::fcntl::{fallocate, FallocateFlags};
    use std::os::fd::AsRawFd;
    const BLOCK: u64 = 4096;
    let file = fs::OpenOptions::new().write(true).open(path)?;
    let from = end.div_ceil(BLOCK) * BLOCK;
    let len = file.metadata()?.len();
    if len > from {
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        fallocate(file.as_raw_fd(), flags, from as i64, (len - from) as i64)?;
        file.sync_all()?;
    }
    Ok(())
}

/// Rewrites the header of an older segment that holds no record as the current
/// version, so that it can be continued.
fn upgrade_empty_segment(path: &Path, shard: u16, first_seq: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all_at(&encode_header(shard, first_seq), 0)?;
    file.sync_data()
}

/// Saves the torn bytes beside the segment (`<segment>.torn-<offset>`, 0600) for
/// whoever wants to look at them, then zeroes them so that nothing of them can ever
/// read as a record again. Returns the copy's path.
fn cut_torn_tail(torn: &TornTail) -> io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let len = (torn.dirty_end - torn.offset) as usize;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&torn.path)?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, torn.offset)?;
    let copy = PathBuf::from(format!("{}.torn-{}", torn.path.display(), torn.offset));
    let mut saved = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&copy)?;
    saved.write_all(&bytes)?;
    saved.sync_all()?;
    file.write_all_at(&vec![0u8; len], torn.offset)?;
    file.sync_data()?;
    Ok(copy)
}
