//! One store entry on disk: a fixed header, then the value.
//!
//! ```text
//!  0  magic "OSFBLK01"
//!  8  kind: 0 = compressed bytes follow, 1 = stored uncompressed (no value),
//!     2 = segmented: a segment table, then the compressed bytes
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
//!
//! A segmented value (qcow2 zlib clusters, [`super::segments`]) is
//!
//! ```text
//!  0      segment count n, u32 little-endian
//!  4      n × { length u32 LE, first 8 bytes of the segment's key }
//!  4+12n  the block's compressed bytes: the segments back to back, then
//!         whatever the codec ends a block with
//! ```
//!
//! The key prefixes let a segment found through the segment index be checked
//! against the entry it points into: a stale or wrong index record is a miss.

use xxhash_rust::xxh3::Xxh3;

pub(super) const MAGIC: [u8; 8] = *b"OSFBLK01";
pub(super) const HEADER_BYTES: usize = 56;
const CHECKSUM_AT: usize = 48;
const KIND_COMPRESSED: u8 = 0;
const KIND_STORED: u8 = 1;
const KIND_SEGMENTED: u8 = 2;
/// Bytes of a segment's key kept in a segmented entry's table.
pub(super) const SEGMENT_KEY_PREFIX_BYTES: usize = 8;
const SEGMENT_RECORD_BYTES: usize = 4 + SEGMENT_KEY_PREFIX_BYTES;

/// What a block became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Compressed(&'a [u8]),
    /// The compressor's answer was "keep it as it is".
    Stored,
    /// The compressed bytes of a block made of segments, with their table.
    Segmented {
        segments: &'a [Segment],
        bytes: &'a [u8],
    },
}

/// One segment of a segmented value: where it ends, and what made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub len_bytes: u32,
    pub key_prefix: [u8; SEGMENT_KEY_PREFIX_BYTES],
}

pub(super) fn encode(key: &[u8; 32], value: Value<'_>) -> Vec<u8> {
    let table;
    let (kind, bytes) = match value {
        Value::Compressed(b) => (KIND_COMPRESSED, b),
        Value::Stored => (KIND_STORED, &[][..]),
        Value::Segmented { segments, bytes } => {
            let mut t = Vec::with_capacity(4 + segments.len() * SEGMENT_RECORD_BYTES + bytes.len());
            t.extend_from_slice(&(segments.len() as u32).to_le_bytes());
            for s in segments {
                t.extend_from_slice(&s.len_bytes.to_le_bytes());
                t.extend_from_slice(&s.key_prefix);
            }
            t.extend_from_slice(bytes);
            table = t;
            (KIND_SEGMENTED, &table[..])
        }
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
        (true, KIND_SEGMENTED) if split_segmented(value).is_some() => Some(Kind::Segmented),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Compressed,
    Stored,
    Segmented,
}

/// A segmented value's compressed bytes, and segment `n`'s range in them
/// with its key prefix; None when the table is malformed or too short.
pub(super) fn segment_of(value: &[u8], n: usize) -> Option<(&[u8], std::ops::Range<usize>, &[u8])> {
    let (count, bytes) = split_segmented(value)?;
    if n >= count {
        return None;
    }
    let mut start = 0;
    for i in 0..n {
        start += table_len(value, i);
    }
    let end = start + table_len(value, n);
    let at = 4 + n * SEGMENT_RECORD_BYTES + 4;
    Some((bytes, start..end, &value[at..at + SEGMENT_KEY_PREFIX_BYTES]))
}

/// A segmented value's compressed bytes (after the table), once the table
/// is checked to describe segments that fit in them.
pub(super) fn segmented_bytes(value: &[u8]) -> Option<&[u8]> {
    split_segmented(value).map(|(_, bytes)| bytes)
}

fn split_segmented(value: &[u8]) -> Option<(usize, &[u8])> {
    let count = u32::from_le_bytes(value.get(..4)?.try_into().ok()?) as usize;
    let table_end = count.checked_mul(SEGMENT_RECORD_BYTES)?.checked_add(4)?;
    let bytes = value.get(table_end..)?;
    let total: usize = (0..count).map(|i| table_len(value, i)).sum();
    (total <= bytes.len() && !bytes.is_empty()).then_some((count, bytes))
}

fn table_len(value: &[u8], i: usize) -> usize {
    let at = 4 + i * SEGMENT_RECORD_BYTES;
    u32::from_le_bytes(value[at..at + 4].try_into().expect("4 bytes")) as usize
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

    #[test]
    fn segmented_entries_give_back_each_segment_and_its_key_prefix() {
        let key = [9u8; 32];
        let segments = [
            Segment {
                len_bytes: 3,
                key_prefix: [1; 8],
            },
            Segment {
                len_bytes: 2,
                key_prefix: [2; 8],
            },
        ];
        let e = encode(
            &key,
            Value::Segmented {
                segments: &segments,
                bytes: b"abcde\x03\x00",
            },
        );
        assert_eq!(decode(&key, &e), Some(Kind::Segmented));
        let value = &e[HEADER_BYTES..];
        assert_eq!(segmented_bytes(value), Some(&b"abcde\x03\x00"[..]));
        let (bytes, range, prefix) = segment_of(value, 1).unwrap();
        assert_eq!((&bytes[range], prefix), (&b"de"[..], &[2u8; 8][..]));
        assert!(segment_of(value, 2).is_none());
        // A table longer than the bytes it describes is corrupt.
        let bad = encode(
            &key,
            Value::Segmented {
                segments: &segments,
                bytes: b"abc",
            },
        );
        assert_eq!(decode(&key, &bad), None);
    }
}
