//! The shipper's own sync of what it read: it reads records as soon as they are
//! written, before the server's `fdatasync` of their group, and one not yet on stable
//! storage could be lost to a power cut after PostgreSQL has it.

use std::path::Path;

use crate::log::files::list_segments;

/// `fdatasync`s every segment of the shard directory `dir` that may hold record
/// `first_seq` or a later one (a read-only descriptor syncs the file as well).
pub fn sync_segments(dir: &Path, first_seq: u64) -> std::io::Result<()> {
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no segment to sync (moved away?)", dir.display()),
        ));
    }
    let from = segments
        .iter()
        .rposition(|s| s.first_seq <= first_seq)
        .unwrap_or(0);
    for segment in &segments[from..] {
        std::fs::File::open(&segment.path)
            .and_then(|f| f.sync_data())
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("fdatasync of {}: {e}", segment.path.display()),
                )
            })?;
    }
    Ok(())
}
