//! Where each record of a shard's log sits, so a record can be read back by its id
//! without a scan: per segment, the offset of each record in sequence order (4 bytes
//! a record). A segment is known by its first record, which always starts right after
//! the segment header. Filled as records are recovered at start-up and as write
//! groups become durable; read by the `GET /api/v1/records/{id}` handler.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::files::segment_name;
use super::record::{decode, field, Decoded, Kind, HEADER_LEN, MAX_PAYLOAD};

/// One segment's record offsets.
#[derive(Debug)]
struct Segment {
    first_seq: u64,
    offsets: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Locations {
    segments: Vec<Segment>,
}

/// A durable record's place: its segment (by first sequence number) and offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
}

impl Locations {
    /// Notes record `seq` at `offset` of its segment; records come in sequence order.
    pub fn add(&mut self, seq: u64, offset: u64) {
        if offset == HEADER_LEN as u64 || self.segments.is_empty() {
            self.segments.push(Segment {
                first_seq: seq,
                offsets: Vec::new(),
            });
        }
        let segment = self.segments.last_mut().expect("pushed above");
        // Segments are at most 1 GiB; ids may skip between segments, never inside one.
        if seq == segment.first_seq + segment.offsets.len() as u64 {
            segment.offsets.push(offset as u32);
        }
    }

    /// Where record `seq` is, if it is durable in this shard's log.
    pub fn get(&self, seq: u64) -> Option<Location> {
        let i = self.segments.partition_point(|s| s.first_seq <= seq);
        let segment = &self.segments[i.checked_sub(1)?];
        let offset = *segment
            .offsets
            .get(usize::try_from(seq - segment.first_seq).ok()?)?;
        Some(Location {
            segment: segment.first_seq,
            offset: u64::from(offset),
        })
    }
}

/// A record read back: what the response needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub kind: Kind,
    pub principal: String,
    pub received_ns: u64,
    pub body: Vec<u8>,
}

/// Reads record `seq` of `shard` at `at` in the shard directory `dir`, checking its CRC
/// and that it is the record asked for. Blocking: for the blocking pool.
pub fn read_record(dir: &Path, shard: u16, seq: u64, at: Location) -> io::Result<Stored> {
    let path: PathBuf = dir.join(segment_name(at.segment));
    let mut file = std::fs::File::open(&path)?;
    file.seek(SeekFrom::Start(at.offset))?;
    let mut frame = vec![0u8; field::PAYLOAD];
    file.read_exact(&mut frame)?;
    let len = u32::from_le_bytes(frame[field::LEN..field::LEN + 4].try_into().unwrap()) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::other(format!(
            "{}: record at {} claims {len} bytes",
            path.display(),
            at.offset
        )));
    }
    frame.resize(field::PAYLOAD + len, 0);
    file.read_exact(&mut frame[field::PAYLOAD..])?;
    match decode(&frame, Some((shard, seq))) {
        Decoded::Record(r, _) => Ok(Stored {
            kind: r.kind,
            principal: r.principal.to_string(),
            received_ns: r.received_ns,
            body: r.body.to_vec(),
        }),
        Decoded::End | Decoded::Invalid(_) => Err(io::Error::other(format!(
            "{}: no valid record {seq} at offset {}",
            path.display(),
            at.offset
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_by_sequence_number_across_segments() {
        let mut l = Locations::default();
        let h = HEADER_LEN as u64;
        for (seq, offset) in [(1, h), (2, h + 100), (3, h + 250), (7, h), (8, h + 60)] {
            l.add(seq, offset);
        }
        let at = |segment, offset| Some(Location { segment, offset });
        assert_eq!(l.get(1), at(1, h));
        assert_eq!(l.get(3), at(1, h + 250));
        assert_eq!(l.get(8), at(7, h + 60));
        // Skipped ids, ids not yet written, and none before the first.
        for missing in [0, 4, 5, 6, 9] {
            assert_eq!(l.get(missing), None, "{missing}");
        }
    }
}
