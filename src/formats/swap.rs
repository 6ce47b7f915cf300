//! Linux swap areas: the one-page header `mkswap` writes (`union swap_header`
//! in the kernel's `include/linux/swap.h`, version 1).
//!
//! A swap partition needs nothing but this header; the rest may stay zero,
//! so the disk builder places it as a 4 KiB extent and leaves the partition
//! sparse, where `mkswap` on a partition-sized file would gain nothing.
//!
//! ```text
//!  offset  size  field
//!       0  1024  bootbits (zero)
//!    1024     4  version = 1
//!    1028     4  last_page (index of the last usable page)
//!    1032     4  nr_badpages = 0
//!    1036    16  UUID
//!    1052    16  volume label, NUL-padded
//!  4086      10  magic "SWAPSPACE2" (the last ten bytes of the page)
//! ```
//! Integers are in the machine's byte order; osforge writes x86-64 and
//! arm64 images, both little-endian.

use crate::formats::gpt::Guid;

/// The page size of the header (x86-64 and the common arm64 kernels).
pub const PAGE_BYTES: u64 = 4096;
/// mkswap refuses areas under ten pages.
pub const MIN_PAGES: u64 = 10;
/// Label bytes, NUL-padded (no terminator needed at full length).
pub const LABEL_BYTES: usize = 16;
const MAGIC: &[u8; 10] = b"SWAPSPACE2";
const VERSION: u32 = 1;
const VERSION_AT: usize = 1024;
const LAST_PAGE_AT: usize = 1028;
const BAD_PAGES_AT: usize = 1032;
const UUID_AT: usize = 1036;
const LABEL_AT: usize = 1052;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("a swap area of {size_bytes} bytes is smaller than {MIN_PAGES} pages of {PAGE_BYTES}")]
    TooSmall { size_bytes: u64 },
    #[error("swap label '{label}' is longer than {LABEL_BYTES} bytes")]
    LabelTooLong { label: String },
}

/// The header page of a swap area of `size_bytes`.
pub fn header(size_bytes: u64, uuid: Guid, label: &str) -> Result<Vec<u8>, Error> {
    let pages = size_bytes / PAGE_BYTES;
    if pages < MIN_PAGES || pages - 1 > u64::from(u32::MAX) {
        return Err(Error::TooSmall { size_bytes });
    }
    if label.len() > LABEL_BYTES {
        return Err(Error::LabelTooLong {
            label: label.to_string(),
        });
    }
    let mut page = vec![0u8; PAGE_BYTES as usize];
    page[VERSION_AT..VERSION_AT + 4].copy_from_slice(&VERSION.to_le_bytes());
    page[LAST_PAGE_AT..LAST_PAGE_AT + 4].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    page[BAD_PAGES_AT..BAD_PAGES_AT + 4].copy_from_slice(&0u32.to_le_bytes());
    page[UUID_AT..UUID_AT + 16].copy_from_slice(&uuid.0);
    page[LABEL_AT..LABEL_AT + label.len()].copy_from_slice(label.as_bytes());
    let magic_at = PAGE_BYTES as usize - MAGIC.len();
    page[magic_at..].copy_from_slice(MAGIC);
    Ok(page)
}

/// A swap area's header, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    pub label: String,
    pub uuid: Guid,
    /// Pages up to and including `last_page`.
    pub size_bytes: u64,
}

/// Reads a version 1 header page (4 KiB pages); None without the magic.
pub fn parse_header(page: &[u8]) -> Option<Area> {
    let page = page.get(..PAGE_BYTES as usize)?;
    let magic_at = PAGE_BYTES as usize - MAGIC.len();
    let le32 = |at: usize| u32::from_le_bytes(page[at..at + 4].try_into().unwrap());
    if &page[magic_at..] != MAGIC || le32(VERSION_AT) != VERSION {
        return None;
    }
    let label = &page[LABEL_AT..LABEL_AT + LABEL_BYTES];
    let end = label.iter().position(|&c| c == 0).unwrap_or(LABEL_BYTES);
    Some(Area {
        label: String::from_utf8_lossy(&label[..end]).into_owned(),
        uuid: Guid(page[UUID_AT..UUID_AT + 16].try_into().unwrap()),
        size_bytes: (u64::from(le32(LAST_PAGE_AT)) + 1) * PAGE_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_ends_with_the_magic_and_counts_pages_from_zero() {
        let uuid = Guid([0xab; 16]);
        let page = header(64 << 20, uuid, "swap").unwrap();
        assert_eq!(&page[4086..], b"SWAPSPACE2");
        assert_eq!(u32::from_le_bytes(page[1024..1028].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(page[1028..1032].try_into().unwrap()),
            (64 << 20) / 4096 - 1
        );
        assert_eq!(&page[1036..1052], &[0xab; 16]);
        assert_eq!(&page[1052..1056], b"swap");
        let area = parse_header(&page).unwrap();
        assert_eq!(
            (area.label.as_str(), area.uuid, area.size_bytes),
            ("swap", uuid, 64 << 20)
        );
        assert!(header(9 * 4096, uuid, "").is_err());
        assert!(header(1 << 20, uuid, &"l".repeat(17)).is_err());
    }
}
