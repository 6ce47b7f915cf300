//! Reading a partition table back: the MBR's four records, both GPT headers
//! (each checked: signature, header CRC, entry array CRC) and the entries.
//!
//! `osforge inspect` shows what a firmware or `sgdisk` would find on a disk
//! or a hybrid ISO, and a disk whose backup header is damaged still boots,
//! so a bad copy is reported, not fatal: [`read_table`] fails only when the
//! disk cannot be read.

use std::io::{self, Read, Seek, SeekFrom};

use super::entry::NAME_UNITS;
use super::header::{HEADER_BYTES, SIGNATURE};
use super::{ENTRY_BYTES, Entry, Guid, Header, PRIMARY_HEADER_LBA, SECTOR_BYTES};

/// Where the four MBR partition records start, and the boot signature.
const MBR_RECORDS_AT: usize = 446;
const MBR_RECORD_BYTES: usize = 16;
const MBR_SIGNATURE_AT: usize = 510;
/// qemu, sgdisk and the kernel refuse entry arrays larger than this; so
/// does this reader, rather than allocate what a corrupt header asks for.
const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;

/// One of the MBR's four partition records (zero records are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrRecord {
    /// 1 to 4.
    pub index: u8,
    pub bootable: bool,
    pub type_code: u8,
    pub first_lba: u32,
    pub sectors: u32,
}

/// Why a GPT header copy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no \"EFI PART\" signature")]
    NoSignature,
    #[error("header size {size} is not {HEADER_BYTES}..=512")]
    BadSize { size: u32 },
    #[error("header CRC32 {stored:#010x} does not match its bytes ({computed:#010x})")]
    BadCrc { stored: u32, computed: u32 },
    #[error("entry array CRC32 {stored:#010x} does not match the entries ({computed:#010x})")]
    BadEntriesCrc { stored: u32, computed: u32 },
    #[error("entry array of {count} × {size} bytes is not a valid GPT entry array")]
    BadEntryArray { count: u32, size: u32 },
    #[error("the header says it is at LBA {stated}, but it was read from LBA {read_at}")]
    WrongLba { stated: u64, read_at: u64 },
    #[error("the header is past the end of the disk")]
    PastEnd,
}

/// One header copy as found at its LBA.
#[derive(Debug, Clone)]
pub struct HeaderCheck {
    pub lba: u64,
    pub header: Result<Header, HeaderError>,
}

/// Everything a partition table holds.
#[derive(Debug, Clone)]
pub struct TableRead {
    /// None when LBA 0 has no 0x55AA boot signature.
    pub mbr: Option<Vec<MbrRecord>>,
    pub primary: HeaderCheck,
    pub backup: HeaderCheck,
    /// Used entries by partition number, from the first valid copy.
    pub entries: Vec<(u32, Entry)>,
}

impl TableRead {
    /// Whether either copy is valid, i.e. the disk has a GPT at all.
    pub fn has_gpt(&self) -> bool {
        self.primary.header.is_ok() || self.backup.header.is_ok()
    }
}

impl Guid {
    /// The inverse of [`Guid::to_gpt_bytes`].
    pub fn from_gpt_bytes(b: [u8; 16]) -> Guid {
        // The swap is its own inverse.
        Guid(Guid(b).to_gpt_bytes())
    }
}

/// The MBR's non-empty partition records; None without the boot signature.
pub fn parse_mbr(block: &[u8]) -> Option<Vec<MbrRecord>> {
    if block.get(MBR_SIGNATURE_AT..MBR_SIGNATURE_AT + 2) != Some(&[0x55, 0xAA][..]) {
        return None;
    }
    let records = (0..4u8)
        .filter_map(|i| {
            let at = MBR_RECORDS_AT + usize::from(i) * MBR_RECORD_BYTES;
            let r = &block[at..at + MBR_RECORD_BYTES];
            let le32 = |o: usize| u32::from_le_bytes(r[o..o + 4].try_into().unwrap());
            (r[4] != 0).then(|| MbrRecord {
                index: i + 1,
                bootable: r[0] & 0x80 != 0,
                type_code: r[4],
                first_lba: le32(8),
                sectors: le32(12),
            })
        })
        .collect();
    Some(records)
}

impl Header {
    /// Parses one header block and checks its signature and CRC.
    pub fn parse(block: &[u8]) -> Result<Header, HeaderError> {
        if block.get(..8) != Some(&SIGNATURE[..]) {
            return Err(HeaderError::NoSignature);
        }
        let le32 = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
        let le64 = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().unwrap());
        let size = le32(12);
        if size < HEADER_BYTES || size as usize > block.len() {
            return Err(HeaderError::BadSize { size });
        }
        let stored = le32(16);
        let mut copy = block[..size as usize].to_vec();
        copy[16..20].fill(0);
        let computed = libdeflater::crc32(&copy);
        if stored != computed {
            return Err(HeaderError::BadCrc { stored, computed });
        }
        Ok(Header {
            my_lba: le64(24),
            alternate_lba: le64(32),
            first_usable_lba: le64(40),
            last_usable_lba: le64(48),
            disk_guid: Guid::from_gpt_bytes(block[56..72].try_into().unwrap()),
            entries_lba: le64(72),
            entry_count: le32(80),
            entry_bytes: le32(84),
            entries_crc32: le32(88),
        })
    }
}

impl Entry {
    /// Parses one entry; None for an unused one (nil type GUID).
    pub fn parse(b: &[u8]) -> Option<Entry> {
        let guid = |at: usize| Guid::from_gpt_bytes(b[at..at + 16].try_into().unwrap());
        let le64 = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let type_guid = guid(0);
        if type_guid == Guid::NIL {
            return None;
        }
        let units: Vec<u16> = b[56..56 + 2 * NAME_UNITS]
            .chunks_exact(2)
            .map(|u| u16::from_le_bytes([u[0], u[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Some(Entry {
            type_guid,
            unique_guid: guid(16),
            first_lba: le64(32),
            last_lba: le64(40),
            attributes: le64(48),
            name: String::from_utf16_lossy(&units),
        })
    }
}

/// Reads the MBR, both GPT headers (LBA 1 and the last LBA) and the entries
/// of the first copy that checks out.
pub fn read_table<R: Read + Seek>(disk: &mut R, disk_size_bytes: u64) -> io::Result<TableRead> {
    let sectors = disk_size_bytes / SECTOR_BYTES;
    let lba0 = read_at(disk, 0, SECTOR_BYTES as usize)?;
    let mbr = parse_mbr(&lba0);
    let mut entries = None;
    let mut check = |lba: u64| -> io::Result<HeaderCheck> {
        if lba == 0 || lba >= sectors {
            return Ok(HeaderCheck {
                lba,
                header: Err(HeaderError::PastEnd),
            });
        }
        let block = read_at(disk, lba * SECTOR_BYTES, SECTOR_BYTES as usize)?;
        let header = match Header::parse(&block) {
            Ok(h) if h.my_lba != lba => Err(HeaderError::WrongLba {
                stated: h.my_lba,
                read_at: lba,
            }),
            Ok(h) => match check_entries(disk, &h, sectors)? {
                Ok(array) => {
                    entries.get_or_insert(array);
                    Ok(h)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        Ok(HeaderCheck { lba, header })
    };
    let primary = check(PRIMARY_HEADER_LBA)?;
    let backup = check(sectors.saturating_sub(1))?;
    let entries = entries
        .unwrap_or_default()
        .chunks_exact(ENTRY_BYTES as usize)
        .enumerate()
        .filter_map(|(i, b)| Entry::parse(b).map(|e| (i as u32 + 1, e)))
        .collect();
    Ok(TableRead {
        mbr,
        primary,
        backup,
        entries,
    })
}

/// The header's entry array when its CRC matches. Entries of other sizes
/// than 128 bytes are allowed by the spec but only the first 128 bytes of
/// each are read, so they are refused here.
fn check_entries<R: Read + Seek>(
    disk: &mut R,
    h: &Header,
    sectors: u64,
) -> io::Result<Result<Vec<u8>, HeaderError>> {
    let len = u64::from(h.entry_count) * u64::from(h.entry_bytes);
    if h.entry_bytes != ENTRY_BYTES || len > MAX_ENTRY_ARRAY_BYTES {
        return Ok(Err(HeaderError::BadEntryArray {
            count: h.entry_count,
            size: h.entry_bytes,
        }));
    }
    if h.entries_lba.saturating_add(len.div_ceil(SECTOR_BYTES)) > sectors {
        return Ok(Err(HeaderError::PastEnd));
    }
    let array = read_at(disk, h.entries_lba * SECTOR_BYTES, len as usize)?;
    let computed = libdeflater::crc32(&array);
    if computed != h.entries_crc32 {
        return Ok(Err(HeaderError::BadEntriesCrc {
            stored: h.entries_crc32,
            computed,
        }));
    }
    Ok(Ok(array))
}

fn read_at<R: Read + Seek>(disk: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    disk.seek(SeekFrom::Start(offset))?;
    disk.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gpt::{PartitionTable, ProtectiveMbr};
    use std::io::Cursor;

    fn disk() -> Vec<u8> {
        let size = 8u64 << 20;
        let mut table = PartitionTable::new(size, Guid([5; 16])).unwrap();
        let entry = Entry {
            type_guid: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse().unwrap(),
            unique_guid: Guid::from_random_bytes([3; 16]),
            first_lba: 2048,
            last_lba: 4095,
            attributes: 0,
            name: "EFI System".into(),
        };
        table.add(2, entry).unwrap();
        let bytes = table.to_bytes(&ProtectiveMbr::without_boot_code(9));
        let mut d = vec![0u8; size as usize];
        d[..bytes.head.len()].copy_from_slice(&bytes.head);
        let at = bytes.tail_offset_bytes as usize;
        d[at..at + bytes.tail.len()].copy_from_slice(&bytes.tail);
        d
    }

    #[test]
    fn a_written_table_reads_back_with_both_headers_valid() {
        let d = disk();
        let t = read_table(&mut Cursor::new(&d), d.len() as u64).unwrap();
        assert_eq!(t.mbr.as_ref().unwrap()[0].type_code, 0xEE);
        let (p, b) = (t.primary.header.unwrap(), t.backup.header.unwrap());
        assert_eq!((p.my_lba, b.my_lba), (1, d.len() as u64 / 512 - 1));
        assert_eq!(p.disk_guid, Guid([5; 16]));
        assert_eq!(t.entries.len(), 1);
        let (number, e) = &t.entries[0];
        assert_eq!(
            (*number, e.name.as_str(), e.first_lba, e.last_lba),
            (2, "EFI System", 2048, 4095)
        );
        assert_eq!(e.unique_guid, Guid::from_random_bytes([3; 16]));
    }

    #[test]
    fn a_damaged_backup_header_is_reported_and_the_primary_still_read() {
        let mut d = disk();
        let last = d.len() - 512;
        d[last + 40] ^= 1;
        let t = read_table(&mut Cursor::new(&d), d.len() as u64).unwrap();
        assert!(matches!(t.backup.header, Err(HeaderError::BadCrc { .. })));
        assert!(t.primary.header.is_ok());
        assert_eq!(t.entries.len(), 1);
        d[1024] ^= 1; // the primary entry array
        let t = read_table(&mut Cursor::new(&d), d.len() as u64).unwrap();
        assert!(matches!(
            t.primary.header,
            Err(HeaderError::BadEntriesCrc { .. })
        ));
        assert!(!t.has_gpt());
        assert!(t.entries.is_empty());
    }
}
