//! Inode records. Each type has a basic form and an extended one; the extended
//! form is used only when a field does not fit the basic one (xattrs, hard
//! links on files, > 4 GiB, sparse files, large or indexed directories), as
//! mksquashfs does.
//!
//! ```text
//!  common header (16 bytes): type u16 | mode u16 | uid idx u16 | gid idx u16
//!                            | mtime u32 | inode number u32
//!  then the type's body (squashfs_fs.h: squashfs_{dir,ldir,reg,lreg,...}_inode)
//! ```

use super::data::FileLayout;
use super::dir::DirIndexEntry;
use super::superblock::Le;

pub(crate) const NO_XATTR: u32 = u32::MAX;
pub(crate) const NO_FRAGMENT: u32 = u32::MAX;

mod kind {
    pub const DIR: u16 = 1;
    pub const FILE: u16 = 2;
    pub const SYMLINK: u16 = 3;
    pub const BLOCK_DEV: u16 = 4;
    pub const CHAR_DEV: u16 = 5;
    pub const FIFO: u16 = 6;
    pub const SOCKET: u16 = 7;
    /// Extended types are the basic ones + 7.
    pub const EXTENDED: u16 = 7;
}

pub(crate) struct Header {
    pub mode: u16,
    pub uid_index: u16,
    pub gid_index: u16,
    pub mtime: u32,
    pub inode_number: u32,
    pub xattr: Option<u32>,
}

impl Header {
    fn put(&self, b: &mut Le, inode_type: u16) {
        b.u16(inode_type);
        b.u16(self.mode);
        b.u16(self.uid_index);
        b.u16(self.gid_index);
        b.u32(self.mtime);
        b.u32(self.inode_number);
    }
}

pub(crate) struct DirBody<'a> {
    pub listing_block: u32,
    pub listing_offset: u16,
    /// Listing bytes + 3, as the format counts "." and "..".
    pub file_size: u32,
    pub nlink: u32,
    pub parent_inode: u32,
    pub index: &'a [DirIndexEntry],
}

pub(crate) fn directory(h: &Header, d: &DirBody) -> Vec<u8> {
    let mut b = Le::with_capacity(40);
    if h.xattr.is_none() && d.index.is_empty() && d.file_size <= u16::MAX as u32 {
        h.put(&mut b, kind::DIR);
        b.u32(d.listing_block);
        b.u32(d.nlink);
        b.u16(d.file_size as u16);
        b.u16(d.listing_offset);
        b.u32(d.parent_inode);
    } else {
        h.put(&mut b, kind::DIR + kind::EXTENDED);
        b.u32(d.nlink);
        b.u32(d.file_size);
        b.u32(d.listing_block);
        b.u32(d.parent_inode);
        b.u16(d.index.len() as u16);
        b.u16(d.listing_offset);
        b.u32(h.xattr.unwrap_or(NO_XATTR));
        for entry in d.index {
            b.u32(entry.listing_offset);
            b.u32(entry.block);
            b.u32(entry.name.len() as u32 - 1);
            b.bytes(&entry.name);
        }
    }
    b.0
}

pub(crate) fn regular_file(h: &Header, layout: &FileLayout, nlink: u32) -> Vec<u8> {
    let mut b = Le::with_capacity(56 + 4 * layout.block_sizes.len());
    let (fragment, offset) = match layout.fragment {
        Some(f) => (f.index, f.offset),
        None => (NO_FRAGMENT, 0),
    };
    let fits_basic = h.xattr.is_none()
        && nlink == 1
        && layout.sparse_bytes == 0
        && layout.size <= u32::MAX as u64
        && layout.blocks_start <= u32::MAX as u64;
    if fits_basic {
        h.put(&mut b, kind::FILE);
        b.u32(layout.blocks_start as u32);
        b.u32(fragment);
        b.u32(offset);
        b.u32(layout.size as u32);
    } else {
        h.put(&mut b, kind::FILE + kind::EXTENDED);
        b.u64(layout.blocks_start);
        b.u64(layout.size);
        b.u64(layout.sparse_bytes);
        b.u32(nlink);
        b.u32(fragment);
        b.u32(offset);
        b.u32(h.xattr.unwrap_or(NO_XATTR));
    }
    for &word in &layout.block_sizes {
        b.u32(word);
    }
    b.0
}

pub(crate) fn symlink(h: &Header, target: &[u8], nlink: u32) -> Vec<u8> {
    let mut b = Le::with_capacity(24 + target.len());
    let extended = h.xattr.is_some();
    h.put(
        &mut b,
        if extended {
            kind::SYMLINK + kind::EXTENDED
        } else {
            kind::SYMLINK
        },
    );
    b.u32(nlink);
    b.u32(target.len() as u32);
    b.bytes(target);
    if let Some(x) = h.xattr {
        b.u32(x);
    }
    b.0
}

pub(crate) enum Special {
    BlockDev(u32),
    CharDev(u32),
    Fifo,
    Socket,
}

pub(crate) fn special(h: &Header, what: Special, nlink: u32) -> Vec<u8> {
    let mut b = Le::with_capacity(28);
    let (basic, rdev) = match what {
        Special::BlockDev(d) => (kind::BLOCK_DEV, Some(d)),
        Special::CharDev(d) => (kind::CHAR_DEV, Some(d)),
        Special::Fifo => (kind::FIFO, None),
        Special::Socket => (kind::SOCKET, None),
    };
    let extended = h.xattr.is_some();
    h.put(
        &mut b,
        if extended {
            basic + kind::EXTENDED
        } else {
            basic
        },
    );
    b.u32(nlink);
    if let Some(d) = rdev {
        b.u32(d);
    }
    if let Some(x) = h.xattr {
        b.u32(x);
    }
    b.0
}

/// Linux's `new_encode_dev`, which the kernel's squashfs decodes.
pub fn encode_device(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::squashfs::data::FragmentRef;

    fn header(xattr: Option<u32>) -> Header {
        Header {
            mode: 0o644,
            uid_index: 0,
            gid_index: 1,
            mtime: 5,
            inode_number: 9,
            xattr,
        }
    }

    #[test]
    fn device_numbers_encode_like_the_kernel() {
        assert_eq!(encode_device(8, 1), 0x801);
        assert_eq!(encode_device(1, 0x1234), 0x34 | (1 << 8) | (0x1200 << 12));
    }

    #[test]
    fn plain_files_use_the_basic_inode_and_big_or_linked_ones_the_extended() {
        let layout = FileLayout {
            size: 200_000,
            blocks_start: 96,
            block_sizes: vec![1000],
            fragment: Some(FragmentRef {
                index: 3,
                offset: 40,
            }),
            sparse_bytes: 0,
        };
        let basic = regular_file(&header(None), &layout, 1);
        assert_eq!(u16::from_le_bytes([basic[0], basic[1]]), 2);
        assert_eq!(basic.len(), 16 + 16 + 4);
        let linked = regular_file(&header(None), &layout, 2);
        assert_eq!(u16::from_le_bytes([linked[0], linked[1]]), 9);
        assert_eq!(linked.len(), 16 + 40 + 4);
        let huge = FileLayout {
            size: 5 << 30,
            ..layout
        };
        assert_eq!(regular_file(&header(None), &huge, 1)[0], 9);
    }

    #[test]
    fn symlinks_with_xattrs_put_the_index_after_the_target() {
        let b = symlink(&header(Some(7)), b"../target", 1);
        assert_eq!(b[0], 10);
        assert_eq!(&b[24..33], b"../target");
        assert_eq!(u32::from_le_bytes(b[33..37].try_into().unwrap()), 7);
    }
}
