//! Hybrid ISO 9660 images (Rock Ridge, Joliet, El Torito BIOS + UEFI, MBR
//! and GPT) that boot from CD and from disk under BIOS and UEFI.
//!
//! A thin, typed wrapper over hadris-iso 3.0.0-rc.2 (pinned: pre-release,
//! one maintainer, API churn between majors), which was checked to boot in
//! all four modes and to round-trip files over 4 GiB as multi-extent files.
//! What the wrapper adds, and why:
//! - the tree is staged by osforge ([`tree`]): SOURCE_DATE_EPOCH clamping,
//!   rational Rock Ridge, sorted walks;
//! - output through [`device::SparseFile`]: holes for zero blocks, one
//!   sync at the end, progress;
//! - GRUB's MBR: hadris-iso writes the isohybrid boot address (image
//!   block × 4) at MBR byte 432, while GRUB's `boot_hybrid.img` needs it
//!   plus 4 (`xorriso --grub2-mbr`); it is patched after writing
//!   ([`writer`]).
//!
//! Memory is bounded: hadris-iso reads each file's data in 64 KiB chunks
//! through a positioned read of the host file while it writes, so a
//! multi-GB squashfs is never held in memory. The tree itself (names and
//! metadata) is in memory.
//!
//! Levels and names: ISO level 3 (files of 4 GiB and more span several
//! extents), primary names upper-cased to d-characters, and the real names
//! in Rock Ridge (any bytes, up to 255) and Joliet (UCS-2, 64 characters,
//! longer names shortened with a warning). Directories nested deeper than
//! 8 levels are relocated to `.rr_moved` as Rock Ridge prescribes (readers
//! show them in place; the empty `.rr_moved` itself stays visible). The
//! volume id is stored as given
//! (up to 32 bytes; Joliet keeps 16 characters), as xorriso does, so
//! `config-2` works for an OpenStack config drive.

pub mod boot;
pub mod device;
mod tree;
mod writer;

use std::io;
use std::path::PathBuf;

pub use boot::{
    BiosBoot, BootConfig, BootInfoTable, EspImage, EspPlacement, MbrBootCode, PartitionTable,
    UefiBoot,
};
pub use writer::{IsoImage, IsoSummary};

/// The application id written when none is given.
pub const DEFAULT_APPLICATION_ID: &str = "OSFORGE";
/// Bytes in the volume id field of the primary volume descriptor.
pub const VOLUME_ID_MAX_BYTES: usize = 32;
/// Bytes in the publisher and application id fields.
pub const LONG_ID_MAX_BYTES: usize = 128;

/// What the image is called and how its metadata is recorded.
#[derive(Debug, Clone)]
pub struct IsoOptions {
    /// The volume id (label), e.g. `config-2`; up to 32 printable ASCII
    /// characters.
    pub volume_id: String,
    pub publisher: Option<String>,
    pub application_id: String,
    /// Unix seconds: the volume's dates, and the latest modification time a
    /// file keeps (later ones are lowered to it), as `SOURCE_DATE_EPOCH`
    /// asks. `None`: the volume is dated now and files keep their times.
    pub mtime: Option<i64>,
    /// `mkisofs -r`: owners 0:0, everything readable, nothing writable.
    pub rational_rock: bool,
    /// Add a Joliet tree (Windows reads long names from it).
    pub joliet: bool,
}

impl IsoOptions {
    pub fn new(volume_id: &str) -> Self {
        IsoOptions {
            volume_id: volume_id.to_string(),
            publisher: None,
            application_id: DEFAULT_APPLICATION_ID.to_string(),
            mtime: None,
            rational_rock: true,
            joliet: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {field} '{value}': {reason}")]
    InvalidIdentifier {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid path '{path}' in the ISO: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("'{path}' is added twice to the ISO")]
    DuplicatePath { path: String },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} is not a regular file")]
    UnsupportedFileType { path: PathBuf },
    #[error("cannot read {path}")]
    ReadingSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot add '{path}' to the ISO tree")]
    Staging {
        path: String,
        #[source]
        source: Box<hadris_fs::PathError>,
    },
    #[error("invalid boot setup: {reason}")]
    InvalidBoot { reason: String },
    #[error("the BIOS boot image '{path}' is not in the ISO tree")]
    BootImageMissing { path: String },
    #[error("laying out the image failed")]
    Planning(#[source] Box<hadris_fs::PathError>),
    #[error("writing the image failed")]
    Writing(#[source] Box<hadris_fs::PathError>),
    #[error("writing the image failed")]
    Output(#[source] io::Error),
}
