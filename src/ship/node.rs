//! A data directory's node identity: a random id created once in `<data-dir>/node-id`
//! (under a lock, written to a temporary file, synced, renamed into place, directory
//! synced), kept
//! with the node's cursors in PostgreSQL. The file also holds the inode of the
//! directory it was created in: a copy of a data directory (another node provisioned
//! from it, a backup restored beside it) sits in another directory and is told apart
//! from the node it was copied from, before it ships anything under that node's name.
//! The node's name ([`name`]) is kept beside it in `<data-dir>/ship-node`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The file, in the data directory.
pub const FILE: &str = "node-id";

/// This data directory's identity, for the cursors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeId(pub String);

/// The data directory's node id, created on first use. `take_over`: a directory moved
/// or restored here (another inode) keeps its id and takes the new inode; without it,
/// that is an error naming both inodes.
pub fn identity(data_dir: &Path, take_over: bool) -> Result<NodeId, String> {
    let path = data_dir.join(FILE);
    let inode = fs::metadata(data_dir)
        .map_err(|e| format!("{}: {e}", data_dir.display()))?
        .ino();
    let kept = match read(&path)? {
        Some(kept) => kept,
        None => create(data_dir, inode)?,
    };
    match kept {
        (id, at) if at == inode => Ok(NodeId(id)),
        (id, at) if take_over => {
            write(data_dir, &id, inode)?;
            log::warn!(
                "ship: {} takes over node id {id} (created in directory inode {at}, now \
                 {inode})",
                data_dir.display()
            );
            Ok(NodeId(id))
        }
        (id, at) => Err(format!(
            "{} holds node id {id}, created in directory inode {at}, but {} is inode \
             {inode}: a copy of another node's data directory? A copy ships as a node of \
             its own: remove its {FILE} and ship-node files and ship it with a new --node. \
             If this is that node's directory, moved or restored here, ship once with \
             --take-over",
            path.display(),
            data_dir.display()
        )),
    }
}

/// The file's (id, inode), if there is a file.
fn read(path: &Path) -> Result<Option<(String, u64)>, String> {
    match fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some).ok_or_else(|| {
            format!(
                "{}: not a node id file (id, then `inode N`)",
                path.display()
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// (id, inode) from the file's text.
fn parse(text: &str) -> Option<(String, u64)> {
    let mut lines = text.lines();
    let id = lines.next()?.trim();
    let inode = lines.next()?.trim().strip_prefix("inode ")?.parse().ok()?;
    (!id.is_empty()).then(|| (id.to_string(), inode))
}

/// 128 random bits as a version 4 UUID.
fn new_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut hex = Vec::with_capacity(32);
    crate::log::id::hex(&bytes, &mut hex);
    let hex = String::from_utf8(hex).expect("hex digits");
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

fn fail(what: &str, path: &Path, e: io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// A synced temporary file (named by this process) holding the id and inode.
fn temporary(data_dir: &Path, id: &str, inode: u64) -> Result<std::path::PathBuf, String> {
    let temp = data_dir.join(format!("{FILE}.{}.tmp", std::process::id()));
    let mut file = File::create(&temp).map_err(|e| fail("creating", &temp, e))?;
    file.write_all(format!("{id}\ninode {inode}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| fail("writing", &temp, e))?;
    Ok(temp)
}

/// Creates the file unless it exists, one process at a time (shippers starting
/// together beside each other take turns on `node-id.lock`); what it holds then.
fn create(data_dir: &Path, inode: u64) -> Result<(String, u64), String> {
    let path = data_dir.join(FILE);
    let lock_path = data_dir.join(format!("{FILE}.lock"));
    let lock = File::create(&lock_path).map_err(|e| fail("creating", &lock_path, e))?;
    // Held until `lock` is closed, on return.
    nix::fcntl::flock(lock.as_raw_fd(), nix::fcntl::FlockArg::LockExclusive)
        .map_err(|e| fail("locking", &lock_path, e.into()))?;
    if let Some(kept) = read(&path)? {
        return Ok(kept);
    }
    let id = new_id()?;
    write(data_dir, &id, inode)?;
    Ok((id, inode))
}

/// Replaces the file atomically and durably: a temporary file, synced, renamed over it,
/// the directory synced.
fn write(data_dir: &Path, id: &str, inode: u64) -> Result<(), String> {
    let path = data_dir.join(FILE);
    let temp = temporary(data_dir, id, inode)?;
    fs::rename(&temp, &path).map_err(|e| fail("renaming into place", &path, e))?;
    crate::log::files::sync_dir(data_dir).map_err(|e| e.to_string())
}

/// The node's name: `given` (`--node`), else the one kept in `<data_dir>/ship-node`,
/// else the host name, kept there for the next run (rows and cursors are per node
/// name, so a renamed host does not ship everything again under a new name).
pub fn name(data_dir: &Path, given: Option<String>) -> Result<String, String> {
    if let Some(node) = given {
        return Ok(node);
    }
    let path = data_dir.join("ship-node");
    match fs::read_to_string(&path) {
        Ok(kept) if !kept.trim().is_empty() => Ok(kept.trim().to_string()),
        Ok(_) | Err(_) if !data_dir.is_dir() => {
            Err(format!("{}: not a data directory", data_dir.display()))
        }
        _ => {
            let node = host_name();
            fs::write(&path, format!("{node}\n"))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(node)
        }
    }
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_reads_back_and_a_bad_one_does_not() {
        assert_eq!(
            parse("0b1c9a7e-2f1d-4c3b-8a9e-1234567890ab\ninode 42\n"),
            Some(("0b1c9a7e-2f1d-4c3b-8a9e-1234567890ab".into(), 42))
        );
        assert_eq!(parse("abc\n"), None);
        assert_eq!(parse("abc\ninode x\n"), None);
        assert_eq!(parse("\ninode 4\n"), None);
        let id = new_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_id().unwrap(), id);
    }
}
