//! A segment read through a bounded window instead of whole: recovery, `verify`,
//! `export` and salvage hold at most [`CHUNK`] bytes of a segment, or one record when a
//! record is larger, never the segment (which may be up to 1 GiB).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::log::record::{
    decode, field, u16_at, u32_at, u64_at, Decoded, Kind, FIXED_LEN, MAX_PAYLOAD,
};

/// How much of a segment is read at a time.
pub const CHUNK: usize = 4 << 20;

pub struct Window {
    file: File,
    len: u64,
    /// How much a refill reads at least: [`CHUNK`], smaller in tests.
    chunk: usize,
    /// Bytes `[start, start + buf.len())` of the file.
    buf: Vec<u8>,
    start: u64,
}

impl Window {
    pub fn open(path: &Path) -> io::Result<Window> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Window {
            file,
            len,
            chunk: CHUNK,
            buf: Vec::new(),
            start: 0,
        })
    }

    /// The file's size.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The bytes from `offset` on: at least `want` of them (fewer only where the file
    /// ends), perhaps more.
    pub fn get(&mut self, offset: u64, want: usize) -> io::Result<&[u8]> {
        let end = (offset + want as u64).min(self.len).max(offset);
        let held_end = self.start + self.buf.len() as u64;
        if offset < self.start || end > held_end {
            let size = (want.max(self.chunk) as u64).min(self.len.saturating_sub(offset)) as usize;
            self.buf.resize(size, 0);
            self.file.read_exact_at(&mut self.buf, offset)?;
            self.start = offset;
        }
        Ok(&self.buf[(offset - self.start) as usize..])
    }

    /// The bytes from `offset` on, holding the whole record its frame declares (as far
    /// as the file goes): what [`decode`] and [`crate::log::record::hash`] read.
    pub fn record_bytes(&mut self, offset: u64) -> io::Result<&[u8]> {
        let head = self.get(offset, FIXED_LEN)?;
        let want = if head.len() >= field::PAYLOAD {
            (u32_at(head, field::LEN) as usize).min(MAX_PAYLOAD) + field::PAYLOAD
        } else {
            FIXED_LEN
        };
        self.get(offset, want)
    }

    /// The record (or end, or damage) at `offset`, as [`decode`] sees it with the whole
    /// record in view.
    pub fn decode_at(
        &mut self,
        offset: u64,
        expect: Option<(u16, u64)>,
    ) -> io::Result<Decoded<'_>> {
        Ok(decode(self.record_bytes(offset)?, expect))
    }

    /// Whether any byte from `offset` to the end is not zero.
    pub fn any_nonzero_from(&mut self, offset: u64) -> io::Result<bool> {
        let mut at = offset;
        while at < self.len {
            // Whatever the window holds from `at` on; a refill only once it runs out.
            let held = self.get(at, 1)?;
            if held.iter().any(|&b| b != 0) {
                return Ok(true);
            }
            at += held.len() as u64;
        }
        Ok(false)
    }

    /// The offset just past the last non-zero byte at or after `from` (`from` if none).
    pub fn nonzero_end(&mut self, from: u64) -> io::Result<u64> {
        let mut end = self.len;
        while end > from {
            let start = end.saturating_sub(self.chunk as u64).max(from);
            let chunk = self.get(start, (end - start) as usize)?;
            if let Some(i) = chunk[..(end - start) as usize]
                .iter()
                .rposition(|&b| b != 0)
            {
                return Ok(start + i as u64 + 1);
            }
            end = start;
        }
        Ok(from)
    }

    /// The first valid record of `shard` with a sequence number of at least `min_seq`
    /// at or after `from`: its offset, the first sequence number of its write group,
    /// and its encoded length. Zero runs are skipped a word at a time; most other
    /// offsets fail the cheap checks before the CRC.
    pub fn next_record(
        &mut self,
        from: u64,
        shard: u16,
        min_seq: u64,
    ) -> io::Result<Option<(u64, u64, usize)>> {
        let mut at = from;
        while at + FIXED_LEN as u64 <= self.len {
            // Whatever the window holds from `at` on; a refill only once it runs out.
            let chunk = self.get(at, FIXED_LEN)?;
            let mut i = 0;
            let mut candidate = None;
            while i + FIXED_LEN <= chunk.len() {
                if chunk[i..i + 8] == [0; 8] {
                    i += 8;
                    continue;
                }
                let plausible = Kind::from_byte(chunk[i + field::KIND]).is_some()
                    && u16_at(chunk, i + field::SHARD) == shard
                    && u64_at(chunk, i + field::SEQ) >= min_seq;
                if plausible {
                    candidate = Some(at + i as u64);
                    break;
                }
                i += 1;
            }
            let Some(offset) = candidate else {
                at += i.max(1) as u64;
                continue;
            };
            if let Decoded::Record(record, len) = self.decode_at(offset, None)? {
                return Ok(Some((
                    offset,
                    record.seq - u64::from(record.group_index),
                    len,
                )));
            }
            at = offset + 1;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::{encode_header, Record, HEADER_LEN};

    /// A segment of `n` records of varying size, then zeros; and each record's offset.
    fn segment(n: u64) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = encode_header(0, 1).to_vec();
        let mut offsets = Vec::new();
        for seq in 1..=n {
            offsets.push(bytes.len() as u64);
            let body = format!(
                "{{\"patientId\":\"P-{seq}\",\"pad\":\"{}\"}}",
                "x".repeat(seq as usize % 97)
            );
            let record = Record {
                kind: Kind::Report,
                shard: 0,
                seq,
                received_ns: seq,
                group_index: 0,
                principal: "p",
                key: None,
                body: body.as_bytes(),
                prev: None,
            };
            record.encode(&mut bytes).unwrap();
        }
        bytes.resize(bytes.len() + 5000, 0);
        (bytes, offsets)
    }

    fn window(bytes: &[u8], chunk: usize) -> (tempfile::TempDir, Window) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        std::fs::write(&path, bytes).unwrap();
        let mut w = Window::open(&path).unwrap();
        w.chunk = chunk;
        (dir, w)
    }

    #[test]
    fn records_across_every_refill_boundary_read_as_from_the_whole_file() {
        let (bytes, offsets) = segment(300);
        assert_eq!(offsets[0], HEADER_LEN as u64);
        // Chunks smaller than a record, and odd sizes, put boundaries everywhere.
        for chunk in [1, 7, 64, 333, 4096] {
            let (_dir, mut w) = window(&bytes, chunk);
            let mut at = HEADER_LEN as u64;
            let mut seq = 1;
            while let Decoded::Record(record, len) = w.decode_at(at, Some((0, seq))).unwrap() {
                assert_eq!(record.received_ns, seq, "chunk {chunk}");
                assert_eq!(at, offsets[seq as usize - 1]);
                at += len as u64;
                seq += 1;
            }
            assert_eq!(seq, 301, "chunk {chunk}");
            assert!(!w.any_nonzero_from(at).unwrap());
            assert_eq!(w.nonzero_end(0).unwrap(), at);
        }
    }

    #[test]
    fn resync_finds_the_next_record_past_damage() {
        let (mut bytes, offsets) = segment(300);
        let damaged = offsets[100] as usize;
        bytes[damaged + 20] ^= 0xff;
        for chunk in [7, 333, 4096] {
            let (_dir, mut w) = window(&bytes, chunk);
            assert!(matches!(
                w.decode_at(offsets[100], Some((0, 101))).unwrap(),
                Decoded::Invalid(_)
            ));
            let next = w.next_record(offsets[100] + 1, 0, 101).unwrap();
            assert_eq!(
                next.map(|(at, first, _)| (at, first)),
                Some((offsets[101], 102)),
                "chunk {chunk}"
            );
        }
    }
}
