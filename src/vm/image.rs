//! What kind of image a file is, read from its content rather than its name:
//! `osforge build` names disks `.qcow2` or `.raw`, but a user may rename them,
//! and QEMU must be told the format (guessing raw is refused for safety).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::Error;

/// qcow2's magic, `QFI\xfb`, at offset 0.
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// An ISO 9660 volume descriptor's standard identifier.
const ISO9660_ID: [u8; 5] = *b"CD001";
/// The first volume descriptor is at sector 16 of 2048 bytes; its
/// identifier follows the one-byte type.
const ISO9660_ID_OFFSET: usize = 16 * 2048 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// An ISO 9660 image (osforge's are hybrid: also a disk with an MBR/GPT).
    Iso,
    Qcow2,
    /// Anything else: a raw disk image.
    Raw,
}

impl ImageFormat {
    /// Detects the format from the first bytes of `path`.
    pub fn detect(path: &Path) -> Result<ImageFormat, Error> {
        let reading = |source| Error::ReadingImage {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(reading)?;
        if !file.metadata().map_err(reading)?.is_file() {
            return Err(Error::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mut head = Vec::with_capacity(ISO9660_ID_OFFSET + ISO9660_ID.len());
        file.take((ISO9660_ID_OFFSET + ISO9660_ID.len()) as u64)
            .read_to_end(&mut head)
            .map_err(reading)?;
        Ok(Self::from_head(&head))
    }

    /// The format of an image that starts with `head`.
    pub fn from_head(head: &[u8]) -> ImageFormat {
        if head.starts_with(&QCOW2_MAGIC) {
            ImageFormat::Qcow2
        } else if head.get(ISO9660_ID_OFFSET..ISO9660_ID_OFFSET + ISO9660_ID.len())
            == Some(&ISO9660_ID[..])
        {
            ImageFormat::Iso
        } else {
            ImageFormat::Raw
        }
    }

    /// The name QEMU's `format=` takes: an ISO is read as raw bytes.
    pub fn qemu_format(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Iso | ImageFormat::Raw => "raw",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Iso => "iso",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_is_recognised_by_its_magic() {
        let mut head = b"QFI\xfb\0\0\0\x03".to_vec();
        head.resize(40_000, 0);
        assert_eq!(ImageFormat::from_head(&head), ImageFormat::Qcow2);
    }

    #[test]
    fn iso_is_recognised_by_cd001_in_the_first_volume_descriptor() {
        let mut head = vec![0u8; ISO9660_ID_OFFSET + 5];
        head[ISO9660_ID_OFFSET - 1] = 1; // primary volume descriptor
        head[ISO9660_ID_OFFSET..].copy_from_slice(b"CD001");
        assert_eq!(ImageFormat::from_head(&head), ImageFormat::Iso);
        // one byte off is not an ISO
        head.copy_within(ISO9660_ID_OFFSET.., ISO9660_ID_OFFSET - 1);
        assert_eq!(ImageFormat::from_head(&head), ImageFormat::Raw);
    }

    #[test]
    fn short_or_unknown_files_are_raw() {
        assert_eq!(ImageFormat::from_head(b""), ImageFormat::Raw);
        assert_eq!(ImageFormat::from_head(&[0xEB; 512]), ImageFormat::Raw);
    }
}
