//! The offline commands that read or copy a data directory (`export`, `backup`,
//! `restore`, `retire-shard`) and `probe`: each calls its tool in [`crate::log`] and
//! says what it did on stderr.

use std::io::{BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::out;
use super::progress::{advance, progress_bar};
use crate::base::logger::COMMAND;
use crate::log::{backup, export, retire};

/// `export`: every record as a JSON line on stdout, with a progress bar on a terminal.
pub fn export(data_dir: &Path, salvage: bool) -> Result<(), String> {
    let bar = progress_bar(data_dir, "export");
    let exported = export::export(
        data_dir,
        &mut BufWriter::with_capacity(1 << 20, out::stream()),
        salvage,
        &mut advance(&bar),
    );
    bar.finish_and_clear();
    let count = exported?;
    log::info!(target: COMMAND, "exported {count} records");
    Ok(())
}

/// `backup`: a line per shard copied, then where the backup is.
pub fn backup(data_dir: &Path, to: &Path) -> Result<(), String> {
    for c in backup::backup(data_dir, to)? {
        log::info!(
            target: COMMAND,
            "shard {}: {} records, up to s{}-{}{}",
            c.shard,
            c.records,
            c.shard,
            c.next_seq.saturating_sub(1),
            if c.cut > 0 {
                format!(" ({} bytes of a half-written group left out)", c.cut)
            } else {
                String::new()
            }
        );
    }
    log::info!(target: COMMAND, "backup in {} verifies", to.display());
    Ok(())
}

/// `restore`: where each shard's new records start.
pub fn restore(from: &Path, data_dir: &Path) -> Result<(), String> {
    for (shard, first) in backup::restore(from, data_dir)? {
        log::info!(target: COMMAND, "shard {shard}: new records start at s{shard}-{first}");
    }
    Ok(())
}

/// `retire-shard`: where the old log went and where the shard's new records start.
pub fn retire_shard(data_dir: &Path, shard: u16) -> Result<(), String> {
    let done = retire::retire_shard(data_dir, shard)?;
    let next = done.next_seq;
    match done.moved_to {
        Some(retired) => log::info!(
            target: COMMAND,
            "shard {shard}: old log moved to {}; new records start at s{shard}-{next}",
            retired.display()
        ),
        None => log::info!(
            target: COMMAND,
            "shard {shard}: its log was gone; new records start at s{shard}-{next}"
        ),
    }
    Ok(())
}

/// `probe`: one `GET path` to `addr` within 3 s; Ok on a 200.
pub fn probe(addr: &str, path: &str) -> Result<(), String> {
    let limit = Duration::from_secs(3);
    let target = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("probe: {addr:?} is not an address"))?;
    let mut stream = TcpStream::connect_timeout(&target, limit)
        .map_err(|e| format!("probe: connecting to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(limit));
    let _ = stream.set_write_timeout(Some(limit));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("probe: writing to {addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("probe: reading from {addr}: {e}"))?;
    match &head[9..12] {
        b"200" => Ok(()),
        status => Err(format!(
            "probe: GET {path} answered {}",
            String::from_utf8_lossy(status)
        )),
    }
}
