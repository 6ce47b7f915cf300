//! One store entry on disk: a fixed header, then the value.
//!
//! ```text
//!  0  magic "OSFBLK01"
//!  8  kind: 0 = compressed bytes follow, 1 = stored uncompressed (no value)
//!  9  3 bytes zero
//! 12  value length, u32 little-endian
//! 16  the entry's key (32 bytes): a file renamed or copied to the wrong
//!     name is caught like a corrupt one
//! 48  xxh3-64 of bytes 0..48 and the value, little-endian
//! 56  value
//! ```
//!
//! The checksum is what lets the store skip fsync: a torn or truncated write
//! after a crash reads as corrupt, is reported, and is recomputed.

use xxhash_rust::xxh3::Xxh3;

pub(super) const MAGIC: [u8; 8] = *b"OSFBLK01";
pub(super) const HEADER_BYTES: usize = 56;
const CHECKSUM_AT: usize = 48;
const KIND_COMPRESSED: u8 = 0;
const KIND_STORED: u8 = 1;

/// What a block became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Compressed(&'a [u8]),
    /// The compressor's answer was "keep it as it is".
    Stored,
}

pub(super) fn encode(key: &[u8; 32], value: Value<'_>) -> Vec<u8> {
    let (kind, bytes) = match value {
        Value::Compressed(b) => (KIND_COMPRESSED, b),
        Value::Stored => (KIND_STORED, &[][..]),
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + bytes.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    let sum = checksum(&out, bytes);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Checks a whole entry as read from disk; on success the value is
/// `entry[HEADER_BYTES..]` (empty for a stored block). None: corrupt.
pub(super) fn decode(key: &[u8; 32], entry: &[u8]) -> Option<Kind> {
    let header = entry.get(..HEADER_BYTES)?;
    let value = &entry[HEADER_BYTES..];
    let len = u32::from_le_bytes(header[12..16].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(header[CHECKSUM_AT..].try_into().ok()?);
    let valid = header[..8] == MAGIC
        && header[9..12] == [0, 0, 0]
        && &header[16..48] == key
        && value.len() == len
        && checksum(&header[..CHECKSUM_AT], value) == sum;
    match (valid, header[8]) {
        (true, KIND_COMPRESSED) if len > 0 => Some(Kind::Compressed),
        (true, KIND_STORED) if len == 0 => Some(Kind::Stored),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Compressed,
    Stored,
}

fn checksum(header: &[u8], value: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&header[..CHECKSUM_AT]);
    h.update(value);
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_to_what_was_encoded_and_any_flipped_byte_is_caught() {
        let key = [7u8; 32];
        let e = encode(&key, Value::Compressed(b"compressed bytes"));
        assert_eq!(decode(&key, &e), Some(Kind::Compressed));
        assert_eq!(&e[HEADER_BYTES..], b"compressed bytes");
        for i in 0..e.len() {
            let mut bad = e.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&key, &bad), None, "byte {i} flipped");
        }
        assert_eq!(decode(&key, &e[..e.len() - 1]), None, "truncated");
        assert_eq!(decode(&[8u8; 32], &e), None, "another key's entry");
        let s = encode(&key, Value::Stored);
        assert_eq!(decode(&key, &s), Some(Kind::Stored));
    }
}
