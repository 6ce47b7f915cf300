//! The 96-byte superblock at offset 0, and the little-endian byte helpers every
//! squashfs structure is serialised with.

/// Must be 0x73717368 ("hsqs" on disk).
pub(crate) const MAGIC: u32 = 0x7371_7368;
pub(crate) const SUPERBLOCK_SIZE: usize = 96;
/// Marks an absent table (xattrs, fragments, export) in the superblock.
pub(crate) const INVALID_TABLE: u64 = u64::MAX;
/// Images are padded to a multiple of this, so they can be loop-mounted.
pub(crate) const DEVICE_BLOCK_SIZE: u64 = 4096;

/// Superblock flags (squashfs_fs.h `SQUASHFS_*` bits).
pub(crate) mod flags {
    pub const UNCOMPRESSED_INODES: u16 = 0x0001;
    pub const UNCOMPRESSED_DATA: u16 = 0x0002;
    pub const UNCOMPRESSED_FRAGMENTS: u16 = 0x0008;
    pub const UNCOMPRESSED_XATTRS: u16 = 0x0100;
    pub const UNCOMPRESSED_IDS: u16 = 0x0800;
    pub const NO_FRAGMENTS: u16 = 0x0010;
    pub const ALWAYS_FRAGMENTS: u16 = 0x0020;
    pub const DUPLICATES: u16 = 0x0040;
    pub const EXPORTABLE: u16 = 0x0080;
    pub const NO_XATTRS: u16 = 0x0200;
    pub const COMPRESSOR_OPTIONS: u16 = 0x0400;
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Superblock {
    pub inode_count: u32,
    /// Seconds since the epoch; the image's creation time.
    pub modification_time: u32,
    pub block_size: u32,
    pub fragment_entry_count: u32,
    pub compression_id: u16,
    pub flags: u16,
    pub id_count: u16,
    /// Inode reference of the root directory.
    pub root_inode: u64,
    /// Image size without the padding to [`DEVICE_BLOCK_SIZE`].
    pub bytes_used: u64,
    pub id_table_start: u64,
    pub xattr_id_table_start: u64,
    pub inode_table_start: u64,
    pub directory_table_start: u64,
    pub fragment_table_start: u64,
    pub export_table_start: u64,
}

impl Superblock {
    /// Parses the superblock at the start of an image (for `osforge
    /// inspect`); None without the magic or with fewer than 96 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Superblock> {
        let b = b.get(..SUPERBLOCK_SIZE)?;
        let u16_at = |at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        if u32_at(0) != MAGIC {
            return None;
        }
        Some(Superblock {
            inode_count: u32_at(4),
            modification_time: u32_at(8),
            block_size: u32_at(12),
            fragment_entry_count: u32_at(16),
            compression_id: u16_at(20),
            flags: u16_at(24),
            id_count: u16_at(26),
            root_inode: u64_at(32),
            bytes_used: u64_at(40),
            id_table_start: u64_at(48),
            xattr_id_table_start: u64_at(56),
            inode_table_start: u64_at(64),
            directory_table_start: u64_at(72),
            fragment_table_start: u64_at(80),
            export_table_start: u64_at(88),
        })
    }

    /// The format version (major, minor) of an image's superblock bytes.
    pub fn version(b: &[u8]) -> Option<(u16, u16)> {
        let v = b.get(28..32)?;
        Some((
            u16::from_le_bytes([v[0], v[1]]),
            u16::from_le_bytes([v[2], v[3]]),
        ))
    }

    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        debug_assert!(self.block_size.is_power_of_two());
        let mut b = Le::with_capacity(SUPERBLOCK_SIZE);
        b.u32(MAGIC);
        b.u32(self.inode_count);
        b.u32(self.modification_time);
        b.u32(self.block_size);
        b.u32(self.fragment_entry_count);
        b.u16(self.compression_id);
        b.u16(self.block_size.trailing_zeros() as u16);
        b.u16(self.flags);
        b.u16(self.id_count);
        b.u16(4); // version major
        b.u16(0); // version minor
        b.u64(self.root_inode);
        b.u64(self.bytes_used);
        b.u64(self.id_table_start);
        b.u64(self.xattr_id_table_start);
        b.u64(self.inode_table_start);
        b.u64(self.directory_table_start);
        b.u64(self.fragment_table_start);
        b.u64(self.export_table_start);
        b.0.try_into().expect("superblock is exactly 96 bytes")
    }
}

/// A little-endian byte builder: squashfs is little-endian throughout.
#[derive(Default)]
pub(crate) struct Le(pub Vec<u8>);

impl Le {
    pub fn with_capacity(n: usize) -> Le {
        Le(Vec::with_capacity(n))
    }
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_fields_land_at_the_offsets_of_the_spec() {
        let sb = Superblock {
            inode_count: 7,
            modification_time: 0x1122_3344,
            block_size: 131072,
            compression_id: 6,
            root_inode: 0xAABB,
            bytes_used: 4096,
            ..Default::default()
        };
        let b = sb.to_bytes();
        let back = Superblock::from_bytes(&b).unwrap();
        assert_eq!(
            (
                back.inode_count,
                back.block_size,
                back.root_inode,
                back.bytes_used
            ),
            (7, 131072, 0xAABB, 4096)
        );
        assert_eq!(Superblock::version(&b), Some((4, 0)));
        assert_eq!(&b[0..4], b"hsqs");
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 131072);
        assert_eq!(u16::from_le_bytes(b[20..22].try_into().unwrap()), 6);
        assert_eq!(
            u16::from_le_bytes(b[22..24].try_into().unwrap()),
            17,
            "block_log"
        );
        assert_eq!(
            u16::from_le_bytes(b[28..30].try_into().unwrap()),
            4,
            "version major"
        );
        assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 0xAABB);
        assert_eq!(u64::from_le_bytes(b[40..48].try_into().unwrap()), 4096);
    }
}
