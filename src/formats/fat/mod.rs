//! FAT12/16/32 images: the El Torito UEFI image (`efiboot.img`) of a hybrid
//! ISO, and later the EFI system partition of a disk image.
//!
//! Built on hadris-fat 3.0.0-rc.2 (pinned), whose images `fsck.fat -n` finds
//! clean; fatfs 0.3 was rejected because it writes long-name entries before
//! `.`/`..` and a wrong `..` cluster on FAT32 (see
//! `shared/reference/crates.md`).
//!
//! Usage: [`FatImage::new`], add files ([`FatImage::add_file`],
//! [`FatImage::add_bytes`], [`FatImage::add_tree`]), then write it whole
//! ([`FatImage::write_file`], [`FatImage::to_vec`]) or into a byte range of a
//! larger image ([`FatImage::write_at`]: hadris-fat formats any block device,
//! and [`device::WindowDevice`] makes one of a window of a file, so a disk
//! builder can format its ESP in place).
//!
//! Reproducible: every entry, directories included, gets the same
//! timestamp (the options' `mtime`, 1980-01-01 without one), file data is
//! copied in path order, and the volume id derives from the tree and the
//! time unless it is given. FAT cannot store dates before 1980, so earlier
//! times (`SOURCE_DATE_EPOCH=0`) are stored as 1980-01-01.

pub mod device;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read, Seek, Write};
use std::path::{Path, PathBuf};

use hadris_fat::VolumeLabel;
use hadris_fs::{Content, DateTime, ErrorKind, MountOptions, Node, PathError, SetAttr, Tree};

use device::{SECTOR_BYTES, WindowDevice};

/// FAT's earliest date, 1980-01-01T00:00:00Z, in Unix seconds.
pub const FAT_EPOCH: i64 = 315_532_800;
/// Automatically sized images are a whole number of these.
pub const AUTO_SIZE_ALIGN_BYTES: u64 = 1 << 20;
/// The cluster size the size estimate assumes; hadris picks 512 B to 4 KiB
/// for images below 512 MiB, so this over-counts small files' slack.
const ESTIMATE_CLUSTER_BYTES: u64 = 4096;
/// Boot sector, two FATs and a FAT12/16 root directory of a small volume,
/// rounded up generously.
const ESTIMATE_OVERHEAD_BYTES: u64 = 128 * 1024;
/// How often an automatically sized image grows (by a quarter) when the
/// estimate was too small, before giving up.
const MAX_GROW_STEPS: u32 = 40;

/// The FAT variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FatKind {
    Fat12,
    Fat16,
    Fat32,
}

impl fmt::Display for FatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FatKind::Fat12 => "FAT12",
            FatKind::Fat16 => "FAT16",
            FatKind::Fat32 => "FAT32",
        })
    }
}

impl std::str::FromStr for FatKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().trim_start_matches("fat") {
            "12" => Ok(FatKind::Fat12),
            "16" => Ok(FatKind::Fat16),
            "32" => Ok(FatKind::Fat32),
            _ => Err("expected 12, 16 or 32".into()),
        }
    }
}

impl FatKind {
    fn to_hadris(self) -> hadris_fat::FatKind {
        match self {
            FatKind::Fat12 => hadris_fat::FatKind::Fat12,
            FatKind::Fat16 => hadris_fat::FatKind::Fat16,
            FatKind::Fat32 => hadris_fat::FatKind::Fat32,
        }
    }

    fn from_hadris(kind: hadris_fat::FatKind) -> Self {
        match kind {
            hadris_fat::FatKind::Fat12 => FatKind::Fat12,
            hadris_fat::FatKind::Fat16 => FatKind::Fat16,
            // The enum is `#[non_exhaustive]`; FAT32 is the only other
            // variant hadris-fat formats.
            _ => FatKind::Fat32,
        }
    }
}

/// How the volume is laid out. Every field may be left at its default.
#[derive(Debug, Clone, Default)]
pub struct FatOptions {
    /// The variant; by default chosen from the size (FAT12 below 16 MiB,
    /// FAT16 below 512 MiB, FAT32 above), as mkfs.fat does.
    pub kind: Option<FatKind>,
    /// The image size; by default the contents plus room for the FAT
    /// structures, rounded up to [`AUTO_SIZE_ALIGN_BYTES`]. Ignored by
    /// [`FatImage::write_at`], whose window is the size.
    pub size_bytes: Option<u64>,
    /// The volume label, up to 11 ASCII characters.
    pub label: Option<String>,
    /// The volume serial number (`mkfs.fat -i`); by default derived from the
    /// tree and the time.
    pub volume_id: Option<u32>,
    /// Unix seconds stamped on every entry; 1980-01-01 by default.
    pub mtime: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid path '{path}' in the FAT image: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("'{path}' is added twice to the FAT image")]
    DuplicatePath { path: String },
    #[error("invalid FAT volume label '{label}': {reason}")]
    InvalidLabel { label: String, reason: &'static str },
    #[error("cannot read {path}")]
    ReadingSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is neither a regular file nor a directory; FAT stores only those")]
    UnsupportedFileType { path: PathBuf },
    #[error("size {size_bytes} is not a whole number of {SECTOR_BYTES}-byte sectors")]
    UnalignedSize { size_bytes: u64 },
    #[error("{size_bytes} bytes is too small for these files as {kind}")]
    TooSmall { size_bytes: u64, kind: String },
    #[error("formatting the FAT volume failed")]
    Formatting(#[source] Box<PathError>),
    #[error("writing the FAT image failed")]
    Writing(#[source] io::Error),
}

enum Entry {
    Dir,
    File { source: PathBuf, len: u64 },
    Bytes(Vec<u8>),
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FatSummary {
    pub kind: FatKind,
    pub size_bytes: u64,
    pub cluster_bytes: u32,
    pub volume_id: u32,
    pub files: usize,
    pub directories: usize,
    pub content_bytes: u64,
}

/// A FAT image to be written: a set of paths and where their bytes come
/// from. Nothing is read until it is written.
pub struct FatImage {
    options: FatOptions,
    label: Option<VolumeLabel>,
    entries: BTreeMap<String, Entry>,
}

impl FatImage {
    pub fn new(options: FatOptions) -> Result<Self, Error> {
        let label = match &options.label {
            None => None,
            Some(text) => Some(VolumeLabel::new(text).map_err(|kind| Error::InvalidLabel {
                label: text.clone(),
                reason: if kind == ErrorKind::NameTooLong {
                    "longer than 11 characters"
                } else {
                    "only ASCII letters, digits, spaces and !#$%&'()-@^_`{}~ are allowed"
                },
            })?),
        };
        if let Some(size_bytes) = options.size_bytes
            && !size_bytes.is_multiple_of(u64::from(SECTOR_BYTES))
        {
            return Err(Error::UnalignedSize { size_bytes });
        }
        Ok(FatImage {
            options,
            label,
            entries: BTreeMap::new(),
        })
    }

    /// Adds a directory (parents are created as needed anyway).
    pub fn add_dir(&mut self, path: &str) -> Result<(), Error> {
        let path = image_path(path)?;
        match self.entries.get(&path) {
            Some(Entry::Dir) => Ok(()),
            Some(_) => Err(Error::DuplicatePath { path }),
            None => {
                self.entries.insert(path, Entry::Dir);
                Ok(())
            }
        }
    }

    /// Adds the host file `source` at `path`; it is read when the image is
    /// written.
    pub fn add_file(&mut self, path: &str, source: &Path) -> Result<(), Error> {
        let md = std::fs::metadata(source).map_err(|e| Error::ReadingSource {
            path: source.to_path_buf(),
            source: e,
        })?;
        if !md.is_file() {
            return Err(Error::UnsupportedFileType {
                path: source.to_path_buf(),
            });
        }
        self.insert(
            path,
            Entry::File {
                source: source.to_path_buf(),
                len: md.len(),
            },
        )
    }

    /// Adds `bytes` at `path`.
    pub fn add_bytes(&mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.insert(path, Entry::Bytes(bytes.into()))
    }

    /// Adds everything under the host directory `dir` at the root of the
    /// image. Symlinks are followed; other special files are refused.
    pub fn add_tree(&mut self, dir: &Path) -> Result<(), Error> {
        self.add_tree_at(dir, "")
    }

    fn add_tree_at(&mut self, dir: &Path, prefix: &str) -> Result<(), Error> {
        let reading = |e| Error::ReadingSource {
            path: dir.to_path_buf(),
            source: e,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(reading)? {
            names.push(entry.map_err(reading)?.file_name());
        }
        names.sort();
        for name in names {
            let host = dir.join(&name);
            let Some(name) = name.to_str() else {
                return Err(Error::InvalidPath {
                    path: host.display().to_string(),
                    reason: "FAT names must be valid UTF-8",
                });
            };
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let md = std::fs::metadata(&host).map_err(|e| Error::ReadingSource {
                path: host.clone(),
                source: e,
            })?;
            if md.is_dir() {
                self.add_dir(&path)?;
                self.add_tree_at(&host, &path)?;
            } else {
                self.add_file(&path, &host)?;
            }
        }
        Ok(())
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<(), Error> {
        let path = image_path(path)?;
        if self.entries.contains_key(&path) {
            return Err(Error::DuplicatePath { path });
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    /// Bytes of file data in the image.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|entry| match entry {
                Entry::Dir => 0,
                Entry::File { len, .. } => *len,
                Entry::Bytes(bytes) => bytes.len() as u64,
            })
            .sum()
    }

    /// A size that holds the contents with room to spare: files rounded up
    /// to 4 KiB clusters, a cluster per directory, the FAT structures, an
    /// eighth more, all rounded up to [`AUTO_SIZE_ALIGN_BYTES`]. FAT32
    /// needs at least 65525 clusters, so writing grows the image past the
    /// estimate when needed.
    pub fn estimated_size(&self) -> u64 {
        let mut data = 0u64;
        let mut dirs = 1u64;
        for entry in self.entries.values() {
            data += match entry {
                Entry::Dir => {
                    dirs += 1;
                    0
                }
                Entry::File { len, .. } => len.div_ceil(ESTIMATE_CLUSTER_BYTES),
                Entry::Bytes(bytes) => (bytes.len() as u64).div_ceil(ESTIMATE_CLUSTER_BYTES),
            } * ESTIMATE_CLUSTER_BYTES;
        }
        let raw = data + dirs * ESTIMATE_CLUSTER_BYTES + ESTIMATE_OVERHEAD_BYTES;
        (raw + raw / 8).div_ceil(AUTO_SIZE_ALIGN_BYTES) * AUTO_SIZE_ALIGN_BYTES
    }

    /// Writes the image as the whole of `file`, which ends up exactly the
    /// image's size.
    pub fn write_file(&self, file: &File) -> Result<FatSummary, Error> {
        let (summary, _) = self.write_growing(|size| {
            // Start each attempt from an empty file, so a failed smaller
            // attempt leaves no stale clusters behind.
            file.set_len(0).map_err(Error::Writing)?;
            file.set_len(size).map_err(Error::Writing)?;
            Ok(file)
        })?;
        Ok(summary)
    }

    /// Writes the image into memory.
    pub fn to_vec(&self) -> Result<Vec<u8>, Error> {
        let (_, cursor) = self.write_growing(|size| Ok(Cursor::new(vec![0u8; size as usize])))?;
        Ok(cursor.into_inner())
    }

    /// Formats the `len` bytes of `out` from byte `offset` (an ESP inside a
    /// disk image) and fills them. `offset` is recorded as the volume's
    /// hidden sectors, as a partition's FAT must say where it starts.
    pub fn write_at<T: Read + Write + Seek>(
        &self,
        out: T,
        offset: u64,
        len: u64,
    ) -> Result<FatSummary, Error> {
        for value in [offset, len] {
            if !value.is_multiple_of(u64::from(SECTOR_BYTES)) {
                return Err(Error::UnalignedSize { size_bytes: value });
            }
        }
        let options = self.hadris_options(len).with_partition_offset(offset);
        let mut dev = WindowDevice::new(out, offset, len);
        self.format(&mut dev, &options, len)
    }

    /// Tries the requested or estimated size, growing an estimated one by a
    /// quarter while hadris-fat reports it too small. `open(size)` gives
    /// the stream of each attempt, sized to `size` bytes.
    fn write_growing<T: Read + Write + Seek>(
        &self,
        mut open: impl FnMut(u64) -> Result<T, Error>,
    ) -> Result<(FatSummary, T), Error> {
        let fixed = self.options.size_bytes;
        let mut size = fixed.unwrap_or_else(|| self.estimated_size());
        let mut steps = 0;
        loop {
            let options = self.hadris_options(size);
            let mut dev = WindowDevice::new(open(size)?, 0, size);
            match self.format(&mut dev, &options, size) {
                Err(Error::TooSmall { .. }) if fixed.is_none() && steps < MAX_GROW_STEPS => {
                    steps += 1;
                    size =
                        (size + size / 4).div_ceil(AUTO_SIZE_ALIGN_BYTES) * AUTO_SIZE_ALIGN_BYTES;
                }
                Err(e) => return Err(e),
                Ok(summary) => return Ok((summary, dev.into_inner())),
            }
        }
    }

    fn hadris_options(&self, size: u64) -> hadris_fat::FatOptions {
        let mut options = hadris_fat::FatOptions::new()
            .with_size(size)
            .with_time(self.time())
            .with_oem_name(*b"OSFORGE ");
        if let Some(kind) = self.options.kind {
            options = options.with_kind(kind.to_hadris());
        }
        if let Some(label) = self.label {
            options = options.with_label(label);
        }
        if let Some(serial) = self.options.volume_id {
            options = options.with_serial(serial);
        }
        options
    }

    fn time(&self) -> DateTime {
        let seconds = self.options.mtime.unwrap_or(FAT_EPOCH).max(FAT_EPOCH);
        DateTime::from_unix_seconds(seconds).unwrap_or(hadris_fs::NoClock::TIME)
    }

    fn tree(&self) -> Result<Tree, Error> {
        let attrs = SetAttr::new().with_modified(self.time());
        let mut tree = Tree::new();
        let mut dirs = std::collections::BTreeSet::new();
        for (path, entry) in &self.entries {
            // Parents are inserted explicitly, so that directories implied by
            // a file's path (`EFI` for `EFI/BOOT/BOOTX64.EFI`) get the same
            // timestamp as everything else.
            for (at, _) in path.match_indices('/') {
                let parent = &path[..at];
                if dirs.insert(parent.to_string()) && tree.get(parent).is_none() {
                    tree.insert(parent, Node::dir().with_attrs(attrs))
                        .map_err(|e| Error::Formatting(Box::new(e)))?;
                }
            }
            let node = match entry {
                Entry::Dir => {
                    dirs.insert(path.clone());
                    Node::dir()
                }
                Entry::File { source, len } => {
                    let content =
                        hadris_fs::host::file(source).map_err(|e| Error::ReadingSource {
                            path: source.clone(),
                            source: io::Error::other(e),
                        })?;
                    if content.len() != *len {
                        return Err(Error::ReadingSource {
                            path: source.clone(),
                            source: io::Error::other("the file changed size after it was added"),
                        });
                    }
                    Node::file(content)
                }
                Entry::Bytes(bytes) => Node::file(Content::bytes(bytes.clone())),
            };
            tree.insert(path, node.with_attrs(attrs))
                .map_err(|e| Error::Formatting(Box::new(e)))?;
        }
        Ok(tree)
    }

    fn format<T: Read + Write + Seek>(
        &self,
        dev: &mut WindowDevice<T>,
        options: &hadris_fat::FatOptions,
        size: u64,
    ) -> Result<FatSummary, Error> {
        let tree = self.tree()?;
        hadris_fat::sync::write(&mut *dev, &tree, options).map_err(|e| {
            if matches!(e.kind(), ErrorKind::NoSpace | ErrorKind::LimitExceeded) {
                Error::TooSmall {
                    size_bytes: size,
                    kind: self.options.kind.map_or("FAT".into(), |k| k.to_string()),
                }
            } else {
                Error::Formatting(Box::new(e))
            }
        })?;
        let fs = hadris_fat::sync::FatFs::mount(&mut *dev, MountOptions::new().read_only())
            .map_err(|e| Error::Formatting(Box::new(e.into())))?;
        let geometry = fs.info();
        let summary = FatSummary {
            kind: FatKind::from_hadris(geometry.kind()),
            size_bytes: size,
            cluster_bytes: geometry.cluster_size(),
            volume_id: geometry.volume_serial().unwrap_or(0),
            files: self
                .entries
                .values()
                .filter(|e| !matches!(e, Entry::Dir))
                .count(),
            directories: self
                .entries
                .values()
                .filter(|e| matches!(e, Entry::Dir))
                .count(),
            content_bytes: self.content_bytes(),
        };
        drop(fs);
        Ok(summary)
    }
}

/// Normalises a path inside the image: `/EFI/BOOT/` → `EFI/BOOT`.
fn image_path(path: &str) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    for part in trimmed.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(invalid("empty, '.' and '..' components are not allowed"));
        }
        if part
            .chars()
            .any(|c| c.is_control() || "\"*:<>?\\|".contains(c))
        {
            return Err(invalid(
                "FAT names cannot hold control characters or \"*:<>?\\|",
            ));
        }
        if part.encode_utf16().count() > 255 {
            return Err(invalid("FAT long names hold at most 255 UTF-16 units"));
        }
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_are_normalised_and_checked() {
        assert_eq!(image_path("/EFI/BOOT/").unwrap(), "EFI/BOOT");
        assert!(image_path("").is_err());
        assert!(image_path("a/../b").is_err());
        assert!(image_path("a//b").is_err());
        assert!(image_path("what?").is_err());
    }

    #[test]
    fn the_estimate_covers_contents_and_is_aligned() {
        let mut image = FatImage::new(FatOptions::default()).unwrap();
        image
            .add_bytes("EFI/BOOT/BOOTX64.EFI", vec![1u8; 700_000])
            .unwrap();
        let size = image.estimated_size();
        assert_eq!(size % AUTO_SIZE_ALIGN_BYTES, 0);
        assert!(size > 700_000);
    }

    #[test]
    fn a_written_image_reads_back_with_its_files() {
        let mut image = FatImage::new(FatOptions {
            label: Some("EFIBOOT".into()),
            volume_id: Some(0x1234_abcd),
            ..FatOptions::default()
        })
        .unwrap();
        image.add_bytes("EFI/BOOT/grub.cfg", "echo hi\n").unwrap();
        let bytes = image.to_vec().unwrap();
        assert_eq!(bytes.len() as u64 % AUTO_SIZE_ALIGN_BYTES, 0);
        // The boot sector's serial (FAT12/16: byte 39) is the one asked for.
        assert_eq!(&bytes[39..43], &0x1234_abcdu32.to_le_bytes());
        assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
    }

    #[test]
    fn duplicate_paths_and_bad_labels_are_refused() {
        let mut image = FatImage::new(FatOptions::default()).unwrap();
        image.add_bytes("a", "x").unwrap();
        assert!(matches!(
            image.add_bytes("/a", "y"),
            Err(Error::DuplicatePath { .. })
        ));
        assert!(matches!(
            FatImage::new(FatOptions {
                label: Some("MUCH TOO LONG LABEL".into()),
                ..FatOptions::default()
            }),
            Err(Error::InvalidLabel { .. })
        ));
    }
}
