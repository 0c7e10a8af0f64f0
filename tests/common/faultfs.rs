//! A fault-injecting filesystem for power-loss tests, in the manner of LazyFS: an
//! in-memory FUSE filesystem that keeps every written page in a volatile "page cache"
//! until the file is `fsync`ed or `fdatasync`ed, and can then cut the power.
//!
//! - Data: a write lands in the file's volatile copy and marks its 4 KiB pages dirty;
//!   `fsync`/`fdatasync` copies the dirty pages to the durable copy.
//! - A power cut ([`Cut`]) either drops every dirty page, or first writes back a random
//!   subset of them (torn and reordered writeback: any subset is a possible order cut
//!   short) and drops the rest. Reads then see the durable copy.
//! - Metadata is durable at once: create, mkdir, rename, unlink, truncate and
//!   `fallocate` (and the file size they set) survive a cut without a sync. A size a
//!   write extended is volatile until a sync. This is what ext4's journal gives for
//!   metadata; the directory fsync the server does is accepted and changes nothing.
//!
//! Files are opened with `FOPEN_DIRECT_IO`, so the kernel's page cache never keeps a
//! copy that would hide a cut; each cycle also unmounts and mounts again.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};

const PAGE: usize = 4096;
const ROOT: u64 = 1;
const TTL: Duration = Duration::from_secs(0);
const FOPEN_DIRECT_IO: u32 = 1;

/// How a power cut treats the pages not yet synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Every unsynced page is lost.
    DropAll,
    /// A random subset of the unsynced pages reaches the disk; the rest is lost.
    RandomSubset,
}

#[derive(Default)]
struct File {
    /// What reads see now.
    volatile: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Pages of `volatile` that differ from `durable`.
    dirty: BTreeSet<usize>,
}

enum Kind {
    Dir(BTreeMap<OsString, u64>),
    File(File),
}

struct Node {
    kind: Kind,
    mode: u16,
}

/// The filesystem's whole state; it outlives mounts, as a disk outlives a boot.
pub struct Disk {
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    /// Pages synced and pages lost over the disk's life, for the tests' own checks.
    pub lost_pages: u64,
    pub synced_pages: u64,
    /// Faults on demand: `fallocate` answers ENOSPC (a full disk), `fsync` answers EIO.
    pub full: bool,
    /// With `full`: a write past a file's end answers ENOSPC too (not even a small
    /// file fits); writes into space already allocated still go through.
    pub full_writes: bool,
    pub failing_sync: bool,
    /// Files (by inode number) that cannot be opened for writing: EACCES, as for a
    /// read-only file (root ignores a file's mode bits, so the tests need this).
    pub read_only: std::collections::BTreeSet<u64>,
    /// A filesystem without `fallocate` (as ext2): it answers EOPNOTSUPP.
    pub no_fallocate: bool,
    /// A slow disk: every `fsync` takes this long (the filesystem serves one request
    /// at a time, so nothing else moves meanwhile either).
    pub sync_delay: Duration,
}

impl Disk {
    pub fn new() -> Arc<Mutex<Disk>> {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT,
            Node {
                kind: Kind::Dir(BTreeMap::new()),
                mode: 0o755,
            },
        );
        Arc::new(Mutex::new(Disk {
            nodes,
            next_ino: ROOT + 1,
            lost_pages: 0,
            synced_pages: 0,
            full: false,
            full_writes: false,
            failing_sync: false,
            read_only: Default::default(),
            no_fallocate: false,
            sync_delay: Duration::ZERO,
        }))
    }

    /// Cuts the power: unsynced pages are dropped, or some written back first.
    /// `seed` drives the choice of pages, so a failing cycle can be replayed.
    pub fn power_cut(&mut self, cut: Cut, seed: u64) {
        let mut rng = seed | 1;
        let mut coin = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng & 1 == 1
        };
        for node in self.nodes.values_mut() {
            let Kind::File(file) = &mut node.kind else {
                continue;
            };
            for page in std::mem::take(&mut file.dirty) {
                if cut == Cut::RandomSubset && coin() {
                    copy_page(&file.volatile, &mut file.durable, page);
                } else {
                    self.lost_pages += 1;
                }
            }
            file.volatile = file.durable.clone();
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.nodes.get(&ino)?;
        let (kind, size) = match &node.kind {
            Kind::Dir(_) => (FileType::Directory, 0),
            Kind::File(f) => (FileType::RegularFile, f.volatile.len() as u64),
        };
        let now = SystemTime::now();
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm: node.mode,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn dir(&mut self, ino: u64) -> Option<&mut BTreeMap<OsString, u64>> {
        match &mut self.nodes.get_mut(&ino)?.kind {
            Kind::Dir(entries) => Some(entries),
            Kind::File(_) => None,
        }
    }

    fn file(&mut self, ino: u64) -> Option<&mut File> {
        match &mut self.nodes.get_mut(&ino)?.kind {
            Kind::File(file) => Some(file),
            Kind::Dir(_) => None,
        }
    }

    fn add(&mut self, parent: u64, name: &OsStr, kind: Kind, mode: u32) -> Result<u64, i32> {
        let ino = self.next_ino;
        let entries = self.dir(parent).ok_or(nix::libc::ENOTDIR)?;
        if entries.contains_key(name) {
            return Err(nix::libc::EEXIST);
        }
        entries.insert(name.to_owned(), ino);
        self.next_ino += 1;
        let mode = (mode & 0o7777) as u16;
        self.nodes.insert(ino, Node { kind, mode });
        Ok(ino)
    }
}

/// Copies one page of `from` into `to`, as far as `to` reaches (its size is metadata).
fn copy_page(from: &[u8], to: &mut [u8], page: usize) {
    let start = page * PAGE;
    let end = ((page + 1) * PAGE).min(from.len()).min(to.len());
    if start < end {
        to[start..end].copy_from_slice(&from[start..end]);
    }
}

/// Sets a file's size, durably (truncate and fallocate are metadata here).
fn resize(file: &mut File, size: usize) {
    file.volatile.resize(size, 0);
    file.durable.resize(size, 0);
    file.dirty.retain(|&p| p * PAGE < size);
}

/// A fresh [`Disk`] mounted at `<dir>/mnt`, with `<dir>/data` a link to its `data`
/// directory: a server started over `dir` keeps its log on the fault-injecting disk.
pub fn data_on_faultfs(dir: &Path) -> (Arc<Mutex<Disk>>, Mount) {
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let disk = Disk::new();
    let mount = Mount::new(&disk, &mnt).expect("mount the fault-injecting filesystem");
    std::fs::create_dir(mnt.join("data")).unwrap();
    std::os::unix::fs::symlink(mnt.join("data"), dir.join("data")).unwrap();
    (disk, mount)
}

/// A server over a data directory on a fresh fault-injecting disk. Fields drop in
/// order: the server before the mount.
pub struct OnFaultFs {
    pub server: crate::common::Server,
    pub disk: Arc<Mutex<Disk>>,
    /// Shard 0's directory, on the disk.
    pub shard_dir: std::path::PathBuf,
    pub _mount: Mount,
}

/// Starts a server of `shards` shards under `config` over a data directory on a fresh
/// [`Disk`], `prepare`d first; `ready`: waits until it is ready (else only until it
/// listens).
pub fn serve_on_faultfs(
    prepare: impl FnOnce(&mut Disk),
    ready: bool,
    shards: &str,
    config: &str,
) -> OnFaultFs {
    use crate::common::{temp_dir, Server};
    let dir = temp_dir();
    let (disk, mount) = data_on_faultfs(dir.path());
    let shard_dir = dir.path().join("mnt/data/shard-0");
    prepare(&mut disk.lock().unwrap());
    let server = if ready {
        Server::start_in(dir, config, &["--shards", shards])
    } else {
        Server::start_listening_in(dir, config, &["--shards", shards])
    };
    OnFaultFs {
        server,
        disk,
        shard_dir,
        _mount: mount,
    }
}

/// A mounted [`Disk`]; unmounted when dropped.
pub struct Mount {
    at: std::path::PathBuf,
    session: Option<fuser::BackgroundSession>,
}

/// How long an unmount may wait for the last open file (a killed server's io_uring
/// requests still in flight) before the test fails instead of hanging.
const UNMOUNT_LIMIT: Duration = Duration::from_secs(20);

impl Mount {
    pub fn new(disk: &Arc<Mutex<Disk>>, at: &Path) -> std::io::Result<Mount> {
        let fs = Fs {
            disk: Arc::clone(disk),
        };
        let options = [MountOption::FSName("epro-faultfs".into()), MountOption::RW];
        let session = fuser::spawn_mount2(fs, at, &options)?;
        Ok(Mount {
            at: at.to_path_buf(),
            session: Some(session),
        })
    }
}

impl Drop for Mount {
    /// Detaches the mount at once (a plain unmount fails while a killed process's
    /// requests are still in flight, and fuser would then wait forever), then waits
    /// until the last request is answered and the session ends.
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            session.join();
            let _ = done.send(());
        });
        if ended.recv_timeout(UNMOUNT_LIMIT).is_err() && !std::thread::panicking() {
            panic!(
                "{}: the filesystem was still busy after {UNMOUNT_LIMIT:?}",
                self.at.display()
            );
        }
    }
}

struct Fs {
    disk: Arc<Mutex<Disk>>,
}

impl Fs {
    fn reply_attr(disk: &Disk, ino: u64, reply: ReplyEntry) {
        match disk.attr(ino) {
            Some(attr) => reply.entry(&TTL, &attr, 0),
            None => reply.error(nix::libc::ENOENT),
        }
    }
}

impl Filesystem for Fs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut disk = self.disk.lock().unwrap();
        match disk.dir(parent).and_then(|d| d.get(name).copied()) {
            Some(ino) => Fs::reply_attr(&disk, ino, reply),
            None => reply.error(nix::libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.disk.lock().unwrap().attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(nix::libc::ENOENT),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut disk = self.disk.lock().unwrap();
        if let (Some(size), Some(file)) = (size, disk.file(ino)) {
            resize(file, size as usize);
        }
        if let (Some(mode), Some(node)) = (mode, disk.nodes.get_mut(&ino)) {
            node.mode = (mode & 0o7777) as u16;
        }
        match disk.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(nix::libc::ENOENT),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut disk = self.disk.lock().unwrap();
        match disk.add(parent, name, Kind::Dir(BTreeMap::new()), mode) {
            Ok(ino) => Fs::reply_attr(&disk, ino, reply),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut disk = self.disk.lock().unwrap();
        let existing = disk.dir(parent).and_then(|d| d.get(name).copied());
        let ino = match existing {
            Some(_) if flags & nix::libc::O_EXCL != 0 => return reply.error(nix::libc::EEXIST),
            Some(ino) => ino,
            None => match disk.add(parent, name, Kind::File(File::default()), mode) {
                Ok(ino) => ino,
                Err(e) => return reply.error(e),
            },
        };
        if flags & nix::libc::O_TRUNC != 0 {
            if let Some(file) = disk.file(ino) {
                resize(file, 0);
            }
        }
        match disk.attr(ino) {
            Some(attr) => reply.created(&TTL, &attr, 0, 0, FOPEN_DIRECT_IO),
            None => reply.error(nix::libc::ENOENT),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut disk = self.disk.lock().unwrap();
        match disk.dir(parent).and_then(|d| d.remove(name)) {
            Some(ino) => {
                disk.nodes.remove(&ino);
                reply.ok()
            }
            None => reply.error(nix::libc::ENOENT),
        }
    }

    fn rmdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.unlink(req, parent, name, reply)
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut disk = self.disk.lock().unwrap();
        let Some(ino) = disk.dir(parent).and_then(|d| d.remove(name)) else {
            return reply.error(nix::libc::ENOENT);
        };
        let replaced = disk
            .dir(newparent)
            .and_then(|d| d.insert(newname.to_owned(), ino));
        if let Some(old) = replaced {
            disk.nodes.remove(&old);
        }
        reply.ok()
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut disk = self.disk.lock().unwrap();
        if flags & nix::libc::O_ACCMODE != nix::libc::O_RDONLY && disk.read_only.contains(&ino) {
            return reply.error(nix::libc::EACCES);
        }
        if flags & nix::libc::O_TRUNC != 0 {
            if let Some(file) = disk.file(ino) {
                resize(file, 0);
            }
        }
        reply.opened(0, FOPEN_DIRECT_IO)
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let mut disk = self.disk.lock().unwrap();
        let Some(file) = disk.file(ino) else {
            return reply.error(nix::libc::ENOENT);
        };
        let start = (offset as usize).min(file.volatile.len());
        let end = (start + size as usize).min(file.volatile.len());
        reply.data(&file.volatile[start..end])
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut disk = self.disk.lock().unwrap();
        let full = disk.full && disk.full_writes;
        let Some(file) = disk.file(ino) else {
            return reply.error(nix::libc::ENOENT);
        };
        let start = offset as usize;
        let end = start + data.len();
        // A full disk takes writes into space already allocated (a preallocated
        // segment), and none past it.
        if full && end > file.volatile.len() {
            return reply.error(nix::libc::ENOSPC);
        }
        if end > file.volatile.len() {
            file.volatile.resize(end, 0);
        }
        file.volatile[start..end].copy_from_slice(data);
        for page in start / PAGE..end.div_ceil(PAGE) {
            file.dirty.insert(page);
        }
        reply.written(data.len() as u32)
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let delay = self.disk.lock().unwrap().sync_delay;
        std::thread::sleep(delay);
        let mut disk = self.disk.lock().unwrap();
        if disk.failing_sync {
            return reply.error(nix::libc::EIO);
        }
        let Some(file) = disk.file(ino) else {
            return reply.error(nix::libc::ENOENT);
        };
        // A write may have extended the file: its size becomes durable with its data.
        let len = file.volatile.len();
        if file.durable.len() < len {
            file.durable.resize(len, 0);
        }
        let pages = std::mem::take(&mut file.dirty);
        for &page in &pages {
            copy_page(&file.volatile, &mut file.durable, page);
        }
        disk.synced_pages += pages.len() as u64;
        reply.ok()
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        reply.ok()
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut disk = self.disk.lock().unwrap();
        if disk.no_fallocate {
            return reply.error(nix::libc::EOPNOTSUPP);
        }
        if disk.full {
            return reply.error(nix::libc::ENOSPC);
        }
        let Some(file) = disk.file(ino) else {
            return reply.error(nix::libc::ENOENT);
        };
        let end = (offset + length) as usize;
        if mode & nix::libc::FALLOC_FL_KEEP_SIZE == 0 && end > file.volatile.len() {
            resize(file, end);
        }
        reply.ok()
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let mut disk = self.disk.lock().unwrap();
        let Some(entries) = disk.dir(ino) else {
            return reply.error(nix::libc::ENOTDIR);
        };
        let entries: Vec<(OsString, u64)> = entries.iter().map(|(n, &i)| (n.clone(), i)).collect();
        let mut listing = vec![(OsString::from("."), ino), (OsString::from(".."), ROOT)];
        listing.extend(entries);
        for (i, (name, child)) in listing.into_iter().enumerate().skip(offset as usize) {
            let kind = match disk.nodes.get(&child).map(|n| &n.kind) {
                Some(Kind::File(_)) => FileType::RegularFile,
                _ => FileType::Directory,
            };
            if reply.add(child, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok()
    }
}
