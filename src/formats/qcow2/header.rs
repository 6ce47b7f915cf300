//! The qcow2 version 3 header at offset 0, and the header-extension area after it.
//!
//! qcow2 is big-endian throughout. The header is written last, once the L1 and
//! refcount tables have found their place at the end of the file.

use super::Compression;

/// Must be "QFI\xfb".
pub(crate) const MAGIC: u32 = 0x5146_49fb;
pub(crate) const VERSION: u32 = 3;
/// The v3 header through `compression_type` (byte 104) and its padding to a
/// multiple of 8. qemu 5.1 and later always write this length, zlib or not.
pub(crate) const HEADER_LENGTH: usize = 112;
/// Byte offset of `compression_type`, the first v3 "additional field".
pub(crate) const COMPRESSION_TYPE_OFFSET: usize = 104;
/// `refcount_bits = 1 << refcount_order`: 16-bit refcounts, qemu's default and
/// the only width a version 2 reader knows.
pub(crate) const REFCOUNT_ORDER: u32 = 4;
/// The header-extension area ends with a type-0, length-0 extension.
pub(crate) const EXTENSION_END_MARKER: [u8; 8] = [0; 8];
/// Everything from offset 0 to the end of the extension area.
pub(crate) const HEADER_AREA_BYTES: usize = HEADER_LENGTH + EXTENSION_END_MARKER.len();

/// `incompatible_features` bits.
pub(crate) mod incompatible {
    /// The `compression_type` field is present and non-zero (not zlib).
    pub const COMPRESSION_TYPE: u64 = 1 << 3;
}

/// Values of the `compression_type` byte.
pub(crate) mod compression_type {
    pub const ZLIB: u8 = 0;
    pub const ZSTD: u8 = 1;
}

const _: () = assert!(HEADER_LENGTH.is_multiple_of(8) && COMPRESSION_TYPE_OFFSET < HEADER_LENGTH);

/// The fields osforge sets; the rest (backing file, encryption, snapshots,
/// feature bits other than the compression type) are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// `1 << cluster_bits` is the cluster size.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size_bytes: u64,
    /// Entries in the L1 table.
    pub l1_entries: u32,
    /// Must be cluster-aligned.
    pub l1_table_offset: u64,
    /// Must be cluster-aligned; the table is contiguous.
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    /// Zlib also covers images without compressed clusters.
    pub compression: Compression,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_AREA_BYTES] {
        let (incompatible_features, compression_type) = match self.compression {
            Compression::Zstd => (incompatible::COMPRESSION_TYPE, compression_type::ZSTD),
            Compression::None | Compression::Zlib => (0, compression_type::ZLIB),
        };
        let mut b = Be::with_capacity(HEADER_AREA_BYTES);
        b.u32(MAGIC);
        b.u32(VERSION);
        b.u64(0); // backing_file_offset: no backing file
        b.u32(0); // backing_file_size
        b.u32(self.cluster_bits);
        b.u64(self.size_bytes);
        b.u32(0); // crypt_method: none
        b.u32(self.l1_entries);
        b.u64(self.l1_table_offset);
        b.u64(self.refcount_table_offset);
        b.u32(self.refcount_table_clusters);
        b.u32(0); // nb_snapshots
        b.u64(0); // snapshots_offset
        b.u64(incompatible_features);
        b.u64(0); // compatible_features
        b.u64(0); // autoclear_features
        b.u32(REFCOUNT_ORDER);
        b.u32(HEADER_LENGTH as u32);
        debug_assert_eq!(b.0.len(), COMPRESSION_TYPE_OFFSET);
        b.0.push(compression_type);
        b.0.resize(HEADER_LENGTH, 0); // padding, zeroed as the spec requires
        b.0.extend_from_slice(&EXTENSION_END_MARKER);
        b.0.try_into().expect("header area has a fixed size")
    }
}

/// A big-endian byte builder.
pub(crate) struct Be(pub Vec<u8>);

impl Be {
    pub fn with_capacity(n: usize) -> Be {
        Be(Vec::with_capacity(n))
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(compression: Compression) -> Header {
        Header {
            cluster_bits: 16,
            size_bytes: 0x1_0000_0200,
            l1_entries: 9,
            l1_table_offset: 0x30000,
            refcount_table_offset: 0x50000,
            refcount_table_clusters: 1,
            compression,
        }
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn header_write_matches_the_qcow2_v3_layout() {
        let b = sample(Compression::Zlib).to_bytes();
        assert_eq!(&b[0..4], b"QFI\xfb", "magic");
        assert_eq!(be32(&b, 4), 3, "version");
        assert_eq!(be64(&b, 8), 0, "backing_file_offset");
        assert_eq!(be32(&b, 16), 0, "backing_file_size");
        assert_eq!(be32(&b, 20), 16, "cluster_bits");
        assert_eq!(be64(&b, 24), 0x1_0000_0200, "size");
        assert_eq!(be32(&b, 32), 0, "crypt_method");
        assert_eq!(be32(&b, 36), 9, "l1_size");
        assert_eq!(be64(&b, 40), 0x30000, "l1_table_offset");
        assert_eq!(be64(&b, 48), 0x50000, "refcount_table_offset");
        assert_eq!(be32(&b, 56), 1, "refcount_table_clusters");
        assert_eq!(be32(&b, 60), 0, "nb_snapshots");
        assert_eq!(be64(&b, 64), 0, "snapshots_offset");
        assert_eq!(be64(&b, 72), 0, "incompatible_features");
        assert_eq!(be64(&b, 80), 0, "compatible_features");
        assert_eq!(be64(&b, 88), 0, "autoclear_features");
        assert_eq!(be32(&b, 96), 4, "refcount_order");
        assert_eq!(be32(&b, 100), 112, "header_length");
        assert_eq!(b[104], 0, "compression_type zlib");
        assert!(b[105..112].iter().all(|&x| x == 0), "padding");
        assert_eq!(&b[112..120], &[0; 8], "extension end marker");
    }

    #[test]
    fn zstd_sets_the_compression_type_byte_and_incompatible_bit_3() {
        let b = sample(Compression::Zstd).to_bytes();
        assert_eq!(be64(&b, 72), 1 << 3);
        assert_eq!(b[104], 1);
    }
}
