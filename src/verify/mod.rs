//! `osforge verify`: is an artifact intact, and is it what its manifest
//! says was built?
//!
//! Two kinds of checks, each a typed [`Finding`]:
//! - against `<artifact>.manifest.json` ([`crate::manifest`]): size and
//!   sha256 of the artifact and of the files written with it. A missing
//!   manifest is a failed check, not an error: the structure is still
//!   checked.
//! - structure, with `osforge inspect`'s readers ([`crate::inspect`]) and
//!   the reference tools as oracles: `qemu-img check` and the qcow2
//!   header/L1 for qcow2; the protective MBR, both GPT headers, the
//!   partitions and their filesystems (`e2fsck -fn`, `fsck.fat -n`) for
//!   disks; the volume descriptor, El Torito catalog and hybrid tables for
//!   ISOs; the superblock and `unsquashfs` for squashfs, also the one
//!   inside a live ISO.
//!
//! A flipped byte inside a squashfs data block can decompress without an
//! error (zstd and lz4 blocks carry no checksum), so the structural checks
//! may pass; the sha256 against the manifest is what catches it.

mod disk;
mod image;
mod squashfs;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::inspect::{self, Kind};
use crate::manifest;

/// Which check a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// `<artifact>.manifest.json` is there and readable.
    Manifest,
    /// The artifact's size is the manifest's.
    Size,
    /// The artifact's sha256 is the manifest's.
    Sha256,
    /// A file written with the artifact (checksums, SBOM) matches the manifest.
    Output,
    QemuImgCheck,
    /// The qcow2 header and its L1 table (via the qcow2 reader).
    Qcow2Header,
    ProtectiveMbr,
    GptPrimary,
    GptBackup,
    /// Partitions inside the usable LBAs, not overlapping.
    Partitions,
    /// `e2fsck -fn` on an ext4 partition.
    Ext4,
    /// `fsck.fat -n` on a FAT partition.
    Fat,
    /// The ISO's primary volume descriptor.
    IsoVolume,
    /// The El Torito catalog and its entries.
    ElTorito,
    /// Each El Torito boot image lies inside the file.
    BootImage,
    /// A hybrid ISO's MBR and GPT.
    HybridTable,
    SquashfsSuperblock,
    /// `unsquashfs -s` and `unsquashfs -l -n`.
    Unsquashfs,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&name)
    }
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: Check,
    pub ok: bool,
    /// What was found: the facts when it passed, the problem when not.
    pub detail: String,
}

impl Finding {
    pub fn pass(check: Check, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: true,
            detail: detail.into(),
        }
    }
    pub fn fail(check: Check, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: false,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{verdict} {}: {}", self.check, self.detail)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: PathBuf,
    pub kind: Kind,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }
    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.ok)
    }
}

/// Bytes read to tell what the file is, as `inspect` does.
const SNIFF_BYTES: u64 = 16 * 2048 + 6;

/// Checks the artifact at `path`. Fails only when the file is not an
/// artifact at all (missing, unreadable, none of the four kinds): every
/// problem of an artifact is a finding.
pub fn verify(path: &Path) -> Result<Report, inspect::Error> {
    let reading = |source| inspect::Error::Reading {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(reading)?;
    let size_bytes = file.metadata().map_err(reading)?.len();
    let mut head = Vec::new();
    (&mut file)
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .map_err(reading)?;
    let Some(kind) = inspect::detect(&head, size_bytes) else {
        return Err(inspect::Error::Unrecognised {
            path: path.to_path_buf(),
        });
    };
    let mut findings = against_manifest(path, kind, size_bytes);
    match kind {
        Kind::Qcow2 => image::qcow2(path, &mut findings),
        Kind::Raw => image::raw(path, file, size_bytes, &mut findings),
        Kind::Iso => image::iso(path, size_bytes, &mut findings),
        Kind::Squashfs => squashfs::check(path, 0, size_bytes, "", &mut findings),
    }
    Ok(Report {
        path: path.to_path_buf(),
        kind,
        findings,
    })
}

/// Size and sha256 of the artifact and of each output the manifest lists.
fn against_manifest(path: &Path, kind: Kind, size_bytes: u64) -> Vec<Finding> {
    let (manifest_path, _) = manifest::paths_for(path);
    let m = match manifest::read(&manifest_path) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return vec![Finding::fail(
                Check::Manifest,
                format!(
                    "no {}: size and sha256 cannot be checked (osforge build writes one)",
                    manifest_path.display()
                ),
            )];
        }
        Err(e) => return vec![Finding::fail(Check::Manifest, format!("{e:#}"))],
    };
    let mut found = Vec::new();
    let built = m
        .profile
        .as_ref()
        .map(|p| format!(" from profile {}", p.name))
        .unwrap_or_default();
    let kind_word = kind_name(kind);
    found.push(if m.kind == kind_word {
        Finding::pass(
            Check::Manifest,
            format!(
                "{}: {} {}{built} by osforge {}, {} packages",
                manifest_path.display(),
                m.kind,
                m.artifact.path,
                m.osforge_version,
                m.packages.len()
            ),
        )
    } else {
        Finding::fail(
            Check::Manifest,
            format!(
                "{} describes a {}, but the file is a {kind_word}",
                manifest_path.display(),
                m.kind
            ),
        )
    });
    found.push(if size_bytes == m.artifact.bytes {
        Finding::pass(
            Check::Size,
            format!("{size_bytes} bytes, as the manifest says"),
        )
    } else {
        Finding::fail(
            Check::Size,
            format!(
                "{size_bytes} bytes, but the manifest says {}",
                m.artifact.bytes
            ),
        )
    });
    found.push(match manifest::sha256_file(path) {
        Ok((_, sha)) if sha == m.artifact.sha256 => {
            Finding::pass(Check::Sha256, format!("{sha}, as the manifest says"))
        }
        Ok((_, sha)) => Finding::fail(
            Check::Sha256,
            format!(
                "{sha} differs from the manifest's {}: the file changed since it was built",
                m.artifact.sha256
            ),
        ),
        Err(e) => Finding::fail(Check::Sha256, format!("cannot read the artifact: {e}")),
    });
    let dir = path.parent().unwrap_or(Path::new("."));
    for out in &m.outputs {
        let file = dir.join(&out.path);
        found.push(match manifest::sha256_file(&file) {
            Ok((_, sha)) if sha == out.sha256 => {
                Finding::pass(Check::Output, format!("{}: sha256 matches", out.path))
            }
            Ok((_, sha)) => Finding::fail(
                Check::Output,
                format!(
                    "{}: sha256 {sha}, the manifest says {}",
                    out.path, out.sha256
                ),
            ),
            Err(e) => Finding::fail(Check::Output, format!("{}: {e}", file.display())),
        });
    }
    found
}

/// The manifest's word for a kind.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Iso => "iso",
        Kind::Qcow2 => "qcow2",
        Kind::Raw => "raw",
        Kind::Squashfs => "squashfs",
    }
}

/// The last non-empty line of a tool's output, for a finding's detail.
fn last_line(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}
