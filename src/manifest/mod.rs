//! What was built and from what: `<artifact>.manifest.json` and the SBOM
//! `<artifact>.spdx.json` beside every artifact.
//!
//! The manifest records the osforge version, the profile (name, a digest
//! of the inputs that shape the image, each source file's sha256), every
//! stage's cache key, SOURCE_DATE_EPOCH, the installed packages, and the
//! sha256 and size of the artifact and of each file written beside it.
//! `osforge verify` checks an artifact against it.
//!
//! Nothing secret goes in: no profile values (password hashes live there),
//! no mirror or proxy URL (either may carry credentials); the stage keys
//! and input digests are one-way hashes of those.
//!
//! [`write`] is the one writer: the pipeline calls it after each build, and
//! it works for any artifact (tests call it for images made by `osforge
//! disk`, `iso` and `squashfs`). Both files are written through
//! [`AtomicOutput`], the SBOM first, so the manifest can list its digest.

pub mod dpkg;
pub mod lock;
pub mod spdx;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use dpkg::DebPackage;

use crate::profile::Profile;
use crate::util::output::AtomicOutput;

/// Bumped when the manifest's fields change meaning.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub osforge_version: String,
    pub artifact: FileRecord,
    /// `iso`, `qcow2`, `raw` or `squashfs`.
    pub kind: String,
    /// Other files written with the artifact (checksums, the SBOM).
    pub outputs: Vec<FileRecord>,
    pub profile: Option<ProfileRecord>,
    pub stages: Vec<StageRecord>,
    pub source_date_epoch: Option<u64>,
    pub packages: Vec<DebPackage>,
}

/// A file beside the manifest: its name (relative to the manifest's
/// folder, so the folder can move), size and sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub name: String,
    /// sha256 of the rootfs and OS inputs as JSON (`Profile::rootfs_inputs`
    /// and `os_inputs`): what decides the image apart from per-host values.
    pub inputs_sha256: String,
    /// The stage cache's own fingerprints of the same inputs (xxh3-128).
    pub rootfs_inputs_xxh3_128: String,
    pub os_inputs_xxh3_128: String,
    /// Every file that shaped the profile: profiles, keys, file sources, templates.
    pub sources: Vec<SourceRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: String,
    pub key: String,
}

impl ProfileRecord {
    /// Reads the profile's source files for their digests.
    pub fn of(profile: &Profile) -> anyhow::Result<ProfileRecord> {
        let inputs = serde_json::json!({
            "rootfs": profile.rootfs_inputs(),
            "os": profile.os_inputs(),
        });
        let sources = profile
            .source_files
            .iter()
            .map(|path| {
                let (_, sha256) = sha256_file(path)
                    .with_context(|| format!("hashing the profile's file {}", path.display()))?;
                Ok(SourceRecord {
                    path: path.clone(),
                    sha256,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(ProfileRecord {
            name: profile.name.clone(),
            inputs_sha256: hex(&Sha256::digest(serde_json::to_vec(&inputs)?)),
            rootfs_inputs_xxh3_128: profile.rootfs_inputs().fingerprint(),
            os_inputs_xxh3_128: profile.os_inputs().fingerprint(),
            sources,
        })
    }
}

/// What [`write`] needs besides the artifact itself.
pub struct ManifestInputs<'a> {
    /// `iso`, `qcow2`, `raw` or `squashfs`.
    pub kind: &'a str,
    /// Size and sha256 when the caller has them already (the build hashes
    /// every artifact for its checksum files); else the file is read.
    pub digest: Option<(u64, String)>,
    /// Other files written with it, recorded with their sha256.
    pub outputs: &'a [PathBuf],
    pub profile: Option<ProfileRecord>,
    pub stages: Vec<StageRecord>,
    pub source_date_epoch: Option<u64>,
    pub packages: &'a [DebPackage],
}

/// Where the manifest and the SBOM of `artifact` are.
pub fn paths_for(artifact: &Path) -> (PathBuf, PathBuf) {
    let name = artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        artifact.with_file_name(format!("{name}.manifest.json")),
        artifact.with_file_name(format!("{name}.spdx.json")),
    )
}

/// The paths written.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub manifest: PathBuf,
    pub sbom: PathBuf,
}

/// Writes `<artifact>.spdx.json`, then `<artifact>.manifest.json`.
pub fn write(artifact: &Path, inputs: &ManifestInputs) -> anyhow::Result<Written> {
    let (manifest_path, sbom_path) = paths_for(artifact);
    let (bytes, sha256) = match &inputs.digest {
        Some(d) => d.clone(),
        None => sha256_file(artifact).with_context(|| format!("hashing {}", artifact.display()))?,
    };
    let name = file_name(artifact);
    let created_unix = inputs.source_date_epoch.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let sbom = spdx::document(&spdx::SbomInputs {
        artifact_name: &name,
        artifact_sha256: &sha256,
        profile: inputs.profile.as_ref().map(|p| p.name.as_str()),
        packages: inputs.packages,
        created_unix,
    });
    write_json(&sbom_path, &sbom)?;

    let mut outputs = Vec::new();
    for path in inputs.outputs.iter().chain([&sbom_path]) {
        let (bytes, sha256) =
            sha256_file(path).with_context(|| format!("hashing {}", path.display()))?;
        outputs.push(FileRecord {
            path: file_name(path),
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        osforge_version: env!("CARGO_PKG_VERSION").to_string(),
        artifact: FileRecord {
            path: name,
            bytes,
            sha256,
        },
        kind: inputs.kind.to_string(),
        outputs,
        profile: inputs.profile.clone(),
        stages: inputs.stages.clone(),
        source_date_epoch: inputs.source_date_epoch,
        packages: inputs.packages.to_vec(),
    };
    write_json(&manifest_path, &serde_json::to_value(&manifest)?)?;
    Ok(Written {
        manifest: manifest_path,
        sbom: sbom_path,
    })
}

/// Reads a manifest; `Ok(None)` when there is none.
pub fn read(path: &Path) -> anyhow::Result<Option<Manifest>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    let manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an osforge manifest", path.display()))?;
    Ok(Some(manifest))
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out =
        AtomicOutput::create(path).with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer_pretty(&mut *out.file(), value)?;
    out.file().write_all(b"\n")?;
    out.commit()
        .with_context(|| format!("moving {} into place", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Size and sha256 (hex) of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&sha.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_the_artifact_its_outputs_and_the_sbom_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.raw");
        std::fs::write(&image, b"image bytes").unwrap();
        let sum = dir.path().join("disk.raw.sha256");
        std::fs::write(&sum, b"x  disk.raw\n").unwrap();
        let packages = dpkg::parse_status(
            "Package: systemd\nStatus: install ok installed\nArchitecture: amd64\nVersion: 252\n",
        );
        let written = write(
            &image,
            &ManifestInputs {
                kind: "raw",
                digest: None,
                outputs: std::slice::from_ref(&sum),
                profile: None,
                stages: vec![StageRecord {
                    stage: "bootstrap".into(),
                    key: "k1".into(),
                }],
                source_date_epoch: Some(1_700_000_000),
                packages: &packages,
            },
        )
        .unwrap();
        let m = read(&written.manifest).unwrap().unwrap();
        assert_eq!(m.artifact.path, "disk.raw");
        assert_eq!(m.artifact.bytes, 11);
        // As `printf 'image bytes' | sha256sum` says.
        assert_eq!(
            m.artifact.sha256,
            "de7030234493a8bea844dbe1d8676e68a2c1a4b014c721f0425a22b6df66faec"
        );
        let names: Vec<&str> = m.outputs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(names, ["disk.raw.sha256", "disk.raw.spdx.json"]);
        assert_eq!(m.packages[0].name, "systemd");
        let sbom: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&written.sbom).unwrap()).unwrap();
        assert_eq!(sbom["packages"][1]["versionInfo"], "252");
        assert!(read(&dir.path().join("none.json")).unwrap().is_none());
        // Nothing but the two files and the inputs: no temporaries left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_profile_s_password_hash_and_mirror_credentials_stay_out_of_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let hash = format!("$6$saltsalt${}", "A".repeat(86));
        std::fs::write(
            dir.path().join("secret.yaml"),
            format!(
                "description: secrets\ninherits: [ephemeral]\ndistro:\n  mirror: http://user:s3cret@mirror.example/debian\n\
                 users:\n  - {{name: ops, password_hash: \"{hash}\"}}\n"
            ),
        )
        .unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let search = crate::profile::SearchPath::new(
            vec![dir.path().to_path_buf(), repo.join("profiles")],
            Vec::new(),
        );
        let profile = crate::profile::load("secret", &search, &[]).unwrap();
        assert!(profile.os.users.iter().any(|u| u.password_hash.is_some()));
        let record = ProfileRecord::of(&profile).unwrap();
        assert_eq!(record.name, "secret");
        assert!(
            record.sources.len() >= 3,
            "secret, ephemeral, base and templates"
        );
        let image = dir.path().join("x.raw");
        std::fs::write(&image, b"x").unwrap();
        let written = write(
            &image,
            &ManifestInputs {
                kind: "raw",
                digest: None,
                outputs: &[],
                profile: Some(record),
                stages: Vec::new(),
                source_date_epoch: None,
                packages: &[],
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&written.manifest).unwrap()
            + &std::fs::read_to_string(&written.sbom).unwrap();
        assert!(text.contains("\"inputs_sha256\""), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("mirror.example"),
            "{text}"
        );
        assert!(!text.contains("saltsalt"), "{text}");
    }

    #[test]
    fn reproducible_inputs_give_identical_sboms() {
        let dir = tempfile::tempdir().unwrap();
        let mut texts = Vec::new();
        for sub in ["a", "b"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            let image = dir.path().join(sub).join("x.iso");
            std::fs::write(&image, b"same").unwrap();
            let w = write(
                &image,
                &ManifestInputs {
                    kind: "iso",
                    digest: None,
                    outputs: &[],
                    profile: None,
                    stages: Vec::new(),
                    source_date_epoch: Some(1),
                    packages: &[],
                },
            )
            .unwrap();
            texts.push(std::fs::read(w.sbom).unwrap());
        }
        assert_eq!(texts[0], texts[1]);
    }
}
