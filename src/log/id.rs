//! How records and hashes are named in text: the record id (`s<shard>-<seq>`) and
//! lowercase hex.

/// The record id: shard and sequence number, unique across shards and restarts.
pub fn record_id(shard: u16, seq: u64, out: &mut Vec<u8>) {
    out.push(b's');
    out.extend_from_slice(itoa::Buffer::new().format(shard).as_bytes());
    out.push(b'-');
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
}

/// Lowercase hex of `bytes` (a hash, a body).
pub fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]);
    }
}
