//! The shared stage cache on S3 (`--cache-remote s3://BUCKET/PREFIX`).
//!
//! A stage not in the local cache is looked up under the prefix:
//!
//! - `<prefix>/<stage>/<key>.json`, the descriptor: the data object's name,
//!   size and sha256, and the stage's detail line. It is written last, so a
//!   stage is there for other builds only once its data is whole.
//! - `<prefix>/<stage>/<key>-<sha256[..16]>.tar.zst`: the entry's files (tar
//!   with owners and xattrs, zstd). Named after its content, so two workers
//!   that build the same stage at once never overwrite each other's data
//!   under a descriptor that does not match it.
//!
//! A download is checked against the descriptor's sha256 before anything is
//! unpacked, and unpacked through [`Cache::build`], the same atomic entry
//! machinery local builds use: a failed or corrupt download leaves no entry.
//! A corrupt object is reported and the stage built and uploaded anew.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::{Cache, StageKey};
use super::{BuildRequest, Log};
use crate::s3::{S3Error, S3Url, Store, publish::rate};

const DESCRIPTOR_FORMAT: u32 = 1;
/// The local cache's own files, which [`Cache::build`] writes anew.
const LOCAL_ONLY: &[&str] = &["manifest.json", "entry.json", "last-used"];
const DATA_SUFFIX: &str = ".tar.zst";
/// zstd's default: fast enough to keep up with a LAN.
const ZSTD_LEVEL: i32 = 3;

pub struct RemoteCache {
    pub url: S3Url,
    pub store: Store,
}

#[derive(Debug, Serialize, Deserialize)]
struct Descriptor {
    format: u32,
    /// The data object's key, relative to the prefix.
    object: String,
    bytes: u64,
    sha256: String,
    /// The stage's detail line when it was built.
    detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("{url} is corrupt: {why}")]
    Corrupt { url: String, why: String },
    #[error("{doing}: {source}")]
    Local {
        doing: String,
        source: std::io::Error,
    },
    #[error("{doing}: tar failed: {why}")]
    Tar { doing: String, why: String },
}

/// What the log and report say of a stage's trip to or from the store.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteReport {
    /// `downloaded`, `uploaded` or `upload-failed`.
    pub action: &'static str,
    pub url: String,
    pub bytes: u64,
    pub seconds: f64,
    /// A corrupt remote object found before the stage was built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

pub struct Downloaded {
    pub dir: PathBuf,
    pub detail: String,
    pub report: RemoteReport,
}

impl RemoteCache {
    fn descriptor_name(key: &StageKey) -> String {
        format!("{}/{}.json", key.stage, key.key)
    }

    pub fn descriptor_url(&self, key: &StageKey) -> String {
        self.url.url_of(&Self::descriptor_name(key))
    }

    /// The stage from the store, unpacked into a new local entry; None when
    /// the store does not have it.
    pub fn fetch(
        &self,
        cache: &Cache,
        key: &StageKey,
        owner: &str,
    ) -> Result<Option<Downloaded>, RemoteError> {
        let started = Instant::now();
        let name = Self::descriptor_name(key);
        let Some(bytes) = self.store.get_bytes(&self.url.key(&name))? else {
            return Ok(None);
        };
        let descriptor: Descriptor =
            serde_json::from_slice(&bytes).map_err(|e| RemoteError::Corrupt {
                url: self.url.url_of(&name),
                why: format!("not a stage descriptor ({e})"),
            })?;
        if descriptor.format != DESCRIPTOR_FORMAT || descriptor.object.contains("..") {
            return Err(RemoteError::Corrupt {
                url: self.url.url_of(&name),
                why: format!("unknown descriptor format {}", descriptor.format),
            });
        }
        let url = self.url.url_of(&descriptor.object);
        let scratch = scratch_dir(cache)?;
        let archive = scratch.path().join("stage.tar.zst");
        let _registered = crate::util::cleanup::Registered::new(scratch.path());
        let (got, sha) = match self
            .store
            .get_to_file(&self.url.key(&descriptor.object), &archive)
        {
            Ok(got) => got,
            Err(S3Error::Store { why, .. }) if why.starts_with("not found") => {
                return Err(RemoteError::Corrupt {
                    url,
                    why: "its descriptor names it, but it is not there".into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if sha != descriptor.sha256 || got != descriptor.bytes {
            return Err(RemoteError::Corrupt {
                url,
                why: format!(
                    "sha256 {} ({got} bytes), its descriptor says {} ({} bytes)",
                    &sha[..16],
                    &descriptor.sha256[..descriptor.sha256.len().min(16)],
                    descriptor.bytes
                ),
            });
        }
        let (dir, ()) = cache
            .build(key, Some(owner), |dir| Ok(unpack(&archive, dir)?))
            .map_err(|e| RemoteError::Tar {
                doing: format!("unpacking {url}"),
                why: format!("{e:#}"),
            })?;
        Ok(Some(Downloaded {
            dir,
            detail: descriptor.detail,
            report: RemoteReport {
                action: "downloaded",
                url,
                bytes: got,
                seconds: started.elapsed().as_secs_f64(),
                corrupt: None,
                warning: None,
            },
        }))
    }

    /// Packs a local entry and uploads it, data first, descriptor last.
    pub fn upload(
        &self,
        cache: &Cache,
        key: &StageKey,
        dir: &Path,
        detail: &str,
    ) -> Result<RemoteReport, RemoteError> {
        let started = Instant::now();
        let scratch = scratch_dir(cache)?;
        let _registered = crate::util::cleanup::Registered::new(scratch.path());
        let archive = scratch.path().join("stage.tar.zst");
        let (bytes, sha) = pack(dir, &archive)?;
        let object = format!("{}/{}-{}{DATA_SUFFIX}", key.stage, key.key, &sha[..16]);
        self.store
            .put_file(&self.url.key(&object), &archive, &mut |_, _| {})?;
        let descriptor = Descriptor {
            format: DESCRIPTOR_FORMAT,
            object: object.clone(),
            bytes,
            sha256: sha,
            detail: crate::util::redact::hide(detail),
        };
        let json = serde_json::to_vec_pretty(&descriptor).expect("descriptors serialise");
        self.store
            .put_bytes(&self.url.key(&Self::descriptor_name(key)), json)?;
        Ok(RemoteReport {
            action: "uploaded",
            url: self.url.url_of(&object),
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            corrupt: None,
            warning: None,
        })
    }

    /// Removes a corrupt data object once a good one replaced it (best effort).
    pub fn remove_object(&self, url: &str) {
        if let Some(key) = url
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, key)| key)
        {
            let _ = self.store.delete(key);
        }
    }

    /// "63.6 MiB, 27.8 MiB/s in 2.3 s", for the log.
    pub fn describe(report: &RemoteReport) -> String {
        format!(
            "{}, {}",
            crate::util::size::human_bytes(report.bytes),
            rate(report.bytes, report.seconds)
        )
    }
}

/// The stage from the remote cache, or None (with the corrupt object's URL
/// and why, when that is the reason). Nothing here fails the build: the
/// stage is then built.
pub(super) fn fetch_logged(
    remote: &RemoteCache,
    req: &BuildRequest,
    key: &StageKey,
    label: &str,
    owner: &str,
    log: &Log,
) -> (Option<Downloaded>, Option<(String, String)>) {
    match remote.fetch(&req.cache, key, owner) {
        Ok(Some(got)) => (Some(got), None),
        Ok(None) => {
            log.info(&format!(
                "{label}: not in the remote cache ({})",
                remote.descriptor_url(key)
            ));
            (None, None)
        }
        Err(RemoteError::Corrupt { url, why }) => {
            log.info(&format!(
                "warning: {label}: {url} is corrupt ({why}); building the stage and uploading it anew"
            ));
            (None, Some((url, why)))
        }
        Err(e) => {
            log.info(&format!(
                "warning: {label}: the remote cache failed ({e}); building the stage"
            ));
            (None, None)
        }
    }
}

/// Uploads a stage just built; a failure is a warning, not a failed build.
#[allow(clippy::too_many_arguments)]
pub(super) fn upload_logged(
    remote: &RemoteCache,
    req: &BuildRequest,
    key: &StageKey,
    dir: &Path,
    detail: &str,
    label: &str,
    corrupt: Option<(String, String)>,
    log: &Log,
) -> RemoteReport {
    let started = Instant::now();
    let mut report = match remote.upload(&req.cache, key, dir, detail) {
        Ok(report) => {
            log.info(&format!(
                "{label}: built, uploaded to {} ({})",
                report.url,
                RemoteCache::describe(&report)
            ));
            // A corrupt data object is replaced by one named after its
            // content; a corrupt descriptor was just overwritten, and stays.
            if let Some((url, _)) = &corrupt
                && url.ends_with(DATA_SUFFIX)
                && *url != report.url
            {
                remote.remove_object(url);
            }
            report
        }
        Err(e) => {
            log.info(&format!(
                "warning: {label}: built, but uploading it to the remote cache failed: {e}"
            ));
            RemoteReport {
                action: "upload-failed",
                url: remote.descriptor_url(key),
                bytes: 0,
                seconds: started.elapsed().as_secs_f64(),
                corrupt: None,
                warning: Some(e.to_string()),
            }
        }
    };
    report.corrupt = corrupt.map(|(url, why)| format!("{url}: {why}"));
    report
}

/// A folder for one transfer under `<cache>/tmp` (beside the entries, so a
/// full disk shows where builds write).
fn scratch_dir(cache: &Cache) -> Result<tempfile::TempDir, RemoteError> {
    let parent = cache.root().join("tmp");
    let local = |source| RemoteError::Local {
        doing: format!("creating a transfer folder in {}", parent.display()),
        source,
    };
    std::fs::create_dir_all(&parent).map_err(local)?;
    tempfile::Builder::new()
        .prefix(".remote-")
        .tempdir_in(&parent)
        .map_err(local)
}

fn tar_command() -> Command {
    let mut tar = Command::new("tar");
    tar.args(["--xattrs", "--xattrs-include=*", "--numeric-owner"]);
    tar
}

/// The entry's files (not the local cache's own) as tar.zst in `archive`;
/// its size and sha256.
fn pack(dir: &Path, archive: &Path) -> Result<(u64, String), RemoteError> {
    let doing = || format!("packing {} for the remote cache", dir.display());
    let local = |source| RemoteError::Local {
        doing: doing(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(local)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !LOCAL_ONLY.contains(&n.as_str()))
        .collect();
    names.sort();
    let mut cmd = tar_command();
    cmd.arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(dir)
        .arg("--")
        .args(&names)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, pid) = spawn_tar(&mut cmd).map_err(local)?;
    let mut stdout = child.stdout.take().expect("piped");
    let file = std::fs::File::create_new(archive).map_err(local)?;
    let mut hashed = HashingWriter {
        inner: file,
        sha: Sha256::new(),
        bytes: 0,
    };
    let copied = (|| -> std::io::Result<()> {
        let mut encoder = zstd::Encoder::new(&mut hashed, ZSTD_LEVEL)?;
        std::io::copy(&mut stdout, &mut encoder)?;
        encoder.finish()?;
        Ok(())
    })();
    drop(stdout);
    finish_tar(child, pid, doing())?;
    copied.map_err(local)?;
    hashed.inner.sync_all().map_err(local)?;
    Ok((hashed.bytes, crate::util::hex(&hashed.sha.finalize())))
}

/// Unpacks a downloaded archive into an entry being built.
fn unpack(archive: &Path, dir: &Path) -> Result<(), RemoteError> {
    let doing = || format!("unpacking {}", archive.display());
    let local = |source| RemoteError::Local {
        doing: doing(),
        source,
    };
    let mut cmd = tar_command();
    cmd.args(["--same-owner", "-xpf", "-", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (mut child, pid) = spawn_tar(&mut cmd).map_err(local)?;
    let mut stdin = child.stdin.take().expect("piped");
    let copied = (|| -> std::io::Result<()> {
        let mut decoder = zstd::Decoder::new(std::fs::File::open(archive)?)?;
        std::io::copy(&mut decoder, &mut stdin).map(|_| ())
    })();
    drop(stdin);
    finish_tar(child, pid, doing())?;
    copied.map_err(local)
}

/// Starts tar tied to osforge: killed with it, stopped by its signal handler.
fn spawn_tar(cmd: &mut Command) -> std::io::Result<(std::process::Child, u32)> {
    let child = crate::util::process::die_with_parent(cmd).spawn()?;
    crate::util::process::track(&child);
    let pid = child.id();
    Ok((child, pid))
}

/// Waits for tar; its failure, with the last line it printed, comes
/// before any error of the stream it was fed or read (a broken pipe is
/// only the consequence).
fn finish_tar(child: std::process::Child, pid: u32, doing: String) -> Result<(), RemoteError> {
    let output = child.wait_with_output();
    crate::util::process::untrack_pid(pid);
    let output = output.map_err(|source| RemoteError::Local {
        doing: doing.clone(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(RemoteError::Tar {
        doing,
        why: crate::util::process::last_line(&stderr)
            .unwrap_or("no message")
            .to_string(),
    })
}

struct HashingWriter<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
