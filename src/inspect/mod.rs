//! `osforge inspect`: what is inside an image osforge (or anyone) wrote, read
//! back from the file itself.
//!
//! The kind is found by content, never by the file name: an ISO has `CD001`
//! at byte 32769, qcow2 starts with `QFI\xfb`, squashfs with `hsqs`, and a raw
//! disk has the MBR boot signature `55 AA` at byte 510 (a hybrid ISO has one
//! too, so ISO is tested first). Each kind has its own module and typed
//! report; the command prints the report as text or JSON.
//!
//! What cannot be read natively is read with the reference tools, and each
//! such place says why: ext4 directories with `debugfs` ([`ext4`]), squashfs
//! directory tables with `unsquashfs` ([`squashfs`]).

mod boot;
pub(crate) mod disk;
pub(crate) mod ext4;
mod fs;
pub(crate) mod iso;
mod source;
mod squashfs;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use boot::{GrubMenu, MenuEntry};
pub use disk::{
    DiskReport, Filesystem, GptReport, HeaderState, KernelFile, MbrPartition, PartitionReport,
};
pub use iso::{BootEntry, IsoReport, SeedReport};
pub use squashfs::{SquashfsReport, SuperblockFacts};

use crate::formats::qcow2::{Qcow2Info, Qcow2Reader, ReadError};

/// Where ISO 9660's first volume descriptor starts (block 16 of 2048) and
/// its standard identifier, one byte in.
const ISO_DESCRIPTOR_AT: u64 = 16 * 2048;
const ISO_IDENTIFIER: &[u8; 5] = b"CD001";
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
const MBR_SIGNATURE_AT: usize = 510;
/// Bytes read to tell the kinds apart: through the ISO's identifier.
const SNIFF_BYTES: usize = ISO_DESCRIPTOR_AT as usize + 6;

/// What a file was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Iso,
    Qcow2,
    Raw,
    Squashfs,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Iso => "ISO 9660 image",
            Kind::Qcow2 => "qcow2 image",
            Kind::Raw => "raw disk image",
            Kind::Squashfs => "squashfs image",
        })
    }
}

/// Everything `osforge inspect` found in one file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: PathBuf,
    pub kind: Kind,
    pub file_size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qcow2: Option<Qcow2Info>,
    /// For qcow2 and raw: the disk (for qcow2, as the guest sees it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iso: Option<IsoReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squashfs: Option<SquashfsReport>,
    /// `<file>.sha256` and `<file>.md5sum`, as `osforge build` writes them.
    pub checksums: Vec<ChecksumCheck>,
}

impl Report {
    /// Whether every checksum file found matches the image.
    pub fn checksums_match(&self) -> bool {
        self.checksums.iter().all(|c| c.matches)
    }
}

/// A file inside a filesystem, with its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub size_bytes: u64,
    /// For an EFI binary on a FAT partition: its Authenticode signers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efi: Option<EfiSignature>,
}

/// Whether an EFI binary is signed, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EfiSignature {
    pub signed: bool,
    /// Each signature's signing certificate: subject CN and issuer CN.
    pub signers: Vec<crate::formats::pe::Signer>,
    /// Why the signature table could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl EfiSignature {
    /// Reads `bytes` as a PE image; `None` when it is not one.
    pub fn of(bytes: &[u8]) -> Option<EfiSignature> {
        if !crate::formats::pe::is_pe(bytes) {
            return None;
        }
        Some(match crate::formats::pe::signers(bytes) {
            Ok(signers) => EfiSignature {
                signed: !signers.is_empty(),
                signers,
                error: None,
            },
            Err(e) => EfiSignature {
                signed: true,
                signers: Vec::new(),
                error: Some(e.to_string()),
            },
        })
    }
}

/// A checksum file beside the image, checked against the image's bytes.
#[derive(Debug, Clone, Serialize)]
pub struct ChecksumCheck {
    pub file: PathBuf,
    pub algorithm: &'static str,
    pub expected: String,
    pub actual: String,
    pub matches: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read it")]
    Reading {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: {size_bytes} bytes is too short for an ISO 9660 image, qcow2, raw disk or squashfs"
    )]
    TooShort { path: PathBuf, size_bytes: u64 },
    #[error(
        "{path}: not an ISO 9660 image, qcow2, raw disk (MBR/GPT) or squashfs (none of their magic numbers is there)"
    )]
    Unrecognised { path: PathBuf },
    #[error("{path}: not a readable qcow2 image")]
    Qcow2 {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error(
        "{path}: truncated {kind}: its {what} says {needed_bytes} bytes, but the file has {size_bytes}"
    )]
    Truncated {
        path: PathBuf,
        kind: Kind,
        what: &'static str,
        needed_bytes: u64,
        size_bytes: u64,
    },
    #[error("{path}: malformed {kind}: {reason}")]
    Malformed {
        path: PathBuf,
        kind: Kind,
        reason: String,
    },
    #[error("running {tool} on {path} failed: {reason}")]
    Tool {
        tool: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl Error {
    /// Whether the file given is at fault (not a readable image), as
    /// opposed to the machine (a tool missing, an I/O error).
    pub fn is_bad_input(&self) -> bool {
        match self {
            // A path that is not there, or not a file, is the user's to fix.
            Error::Reading { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
            ),
            Error::Tool { .. } => false,
            Error::Qcow2 { source, .. } => !matches!(source, ReadError::Reading { .. }),
            _ => true,
        }
    }
}

/// Tells the kind from the first bytes of a file of `size_bytes`.
pub fn detect(head: &[u8], size_bytes: u64) -> Option<Kind> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(ISO_DESCRIPTOR_AT as usize + 1, ISO_IDENTIFIER) {
        Some(Kind::Iso)
    } else if at(0, QCOW2_MAGIC) {
        Some(Kind::Qcow2)
    } else if at(0, SQUASHFS_MAGIC) {
        Some(Kind::Squashfs)
    } else if at(MBR_SIGNATURE_AT, &[0x55, 0xAA]) && size_bytes >= 1024 {
        Some(Kind::Raw)
    } else {
        None
    }
}

/// Inspects the file at `path`.
pub fn inspect(path: &Path) -> Result<Report, Error> {
    let reading = |source| Error::Reading {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(reading)?;
    let size_bytes = file.metadata().map_err(reading)?.len();
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(reading)?;
    let Some(kind) = detect(&head, size_bytes) else {
        return Err(if size_bytes < 1024 {
            Error::TooShort {
                path: path.to_path_buf(),
                size_bytes,
            }
        } else {
            Error::Unrecognised {
                path: path.to_path_buf(),
            }
        });
    };
    let mut report = Report {
        path: path.to_path_buf(),
        kind,
        file_size_bytes: size_bytes,
        qcow2: None,
        disk: None,
        iso: None,
        squashfs: None,
        checksums: Vec::new(),
    };
    match kind {
        Kind::Iso => report.iso = Some(iso::inspect(path, file, size_bytes)?),
        Kind::Squashfs => report.squashfs = Some(squashfs::inspect(path, &head, size_bytes)?),
        Kind::Raw => {
            let mut source = disk::Source::Raw {
                file,
                path: path.to_path_buf(),
            };
            report.disk = Some(disk::inspect(path, &mut source, size_bytes)?);
        }
        Kind::Qcow2 => {
            let qcow2_error = |source| Error::Qcow2 {
                path: path.to_path_buf(),
                source,
            };
            file.seek(SeekFrom::Start(0)).map_err(reading)?;
            let reader = Qcow2Reader::open(file).map_err(qcow2_error)?;
            let info = reader.info().clone();
            let mut source = disk::Source::Qcow2(Box::new(reader));
            report.disk = Some(disk::inspect(path, &mut source, info.virtual_size_bytes)?);
            report.qcow2 = Some(info);
        }
    }
    report.checksums = check_sidecars(path)?;
    Ok(report)
}

/// Reads `<image>.sha256` and `<image>.md5sum` (sha256sum/md5sum format, as
/// the build writes them) and hashes the image once for both. They are all
/// `osforge build` leaves beside an image: its report (stages, cache keys,
/// digests) goes to stdout with `--json`; the manifest and SBOM beside it
/// are `osforge verify`'s to check.
fn check_sidecars(path: &Path) -> Result<Vec<ChecksumCheck>, Error> {
    use md5::{Digest, Md5};
    use sha2::Sha256;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut found = Vec::new();
    for (ext, algorithm) in [("sha256", "sha256"), ("md5sum", "md5")] {
        let sidecar = path.with_file_name(format!("{name}.{ext}"));
        if let Ok(text) = std::fs::read_to_string(&sidecar) {
            let expected = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            found.push((sidecar, algorithm, expected));
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let reading = |source| Error::Reading {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(reading)?;
    let (mut sha, mut md5) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(reading)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
    }
    let sha = hex(&sha.finalize());
    let md5 = hex(&md5.finalize());
    Ok(found
        .into_iter()
        .map(|(file, algorithm, expected)| {
            let actual = if algorithm == "sha256" {
                sha.clone()
            } else {
                md5.clone()
            };
            ChecksumCheck {
                matches: actual == expected,
                file,
                algorithm,
                expected,
                actual,
            }
        })
        .collect())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_apart_by_magic_numbers_with_iso_before_mbr() {
        let mut head = vec![0u8; SNIFF_BYTES];
        assert_eq!(detect(&head, 1 << 20), None);
        head[510..512].copy_from_slice(&[0x55, 0xAA]);
        assert_eq!(detect(&head, 1 << 20), Some(Kind::Raw));
        head[32769..32774].copy_from_slice(b"CD001");
        assert_eq!(detect(&head, 1 << 20), Some(Kind::Iso), "hybrid ISO");
        assert_eq!(detect(b"QFI\xfb\0\0\0\x03", 8), Some(Kind::Qcow2));
        assert_eq!(detect(b"hsqs", 4), Some(Kind::Squashfs));
    }
}
