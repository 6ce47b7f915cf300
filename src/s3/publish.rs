//! Publishing a build's files to `s3://BUCKET/PREFIX/<file name>`.
//!
//! The checksum files (`*.sha256`) go up last, after every other file of
//! the set has been uploaded and its size checked: a consumer that waits
//! for `<image>.sha256` (as netboot and provisioning scripts do) never sees
//! it before the image is whole.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{S3Error, S3Url, Store};

/// One uploaded object, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub url: String,
    pub bytes: u64,
    pub seconds: f64,
}

/// One `--publish` destination, connected (credentials checked) before
/// the build's first stage runs.
pub struct PublishTarget {
    pub url: S3Url,
    pub store: Store,
}

/// Uploads a build's files (in the output directory by now) to each
/// destination, checksums last.
pub fn publish_all(
    targets: &[PublishTarget],
    base: &Path,
    files: &[PathBuf],
    log: &dyn Fn(&str),
) -> Result<Vec<Published>, PublishError> {
    let mut published = Vec::new();
    for target in targets {
        let uploaded = publish_files(&target.store, &target.url, Some(base), files, log).map_err(
            |source| PublishError {
                to: target.url.to_string(),
                source,
            },
        )?;
        published.extend(uploaded);
    }
    Ok(published)
}

#[derive(Debug, thiserror::Error)]
#[error("publishing to {to}: {source}")]
pub struct PublishError {
    to: String,
    source: S3Error,
}

/// The order of the uploads: everything else first, checksums last; each
/// group by name, so a set is always published in the same order.
pub fn upload_order(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut ordered = files.to_vec();
    ordered.sort_by_key(|p| (is_checksum(p), p.file_name().map(|n| n.to_os_string())));
    ordered.dedup();
    ordered
}

/// A file's object name under the prefix: its path below `base` (the build's
/// output directory, so a netboot seed's `HOST.seed/user-data` keeps its
/// folder and each host's seed its own URL), else its file name.
fn object_name(path: &Path, base: Option<&Path>) -> String {
    match base.and_then(|b| path.strip_prefix(b).ok()) {
        Some(relative) => relative.to_string_lossy().into_owned(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

fn is_checksum(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "sha256")
}

/// Uploads `files` under `to`, in [`upload_order`]. `log` gets a line per
/// file, and for multipart uploads one at each quarter.
pub fn publish_files(
    store: &Store,
    to: &S3Url,
    base: Option<&Path>,
    files: &[PathBuf],
    log: &dyn Fn(&str),
) -> Result<Vec<Published>, S3Error> {
    let mut published = Vec::new();
    for path in upload_order(files) {
        let name = object_name(&path, base);
        let key = to.key(&name);
        let url = to.url_of(&name);
        let started = Instant::now();
        let mut quarter = 0;
        let bytes = store.put_file(&key, &path, &mut |done, total| {
            let now = done.saturating_mul(4) / total.max(1);
            if total > done && now > quarter {
                quarter = now;
                log(&format!("publish: {url}: {}% uploaded", now * 25));
            }
        })?;
        let seconds = started.elapsed().as_secs_f64();
        log(&format!(
            "publish: uploaded {url} ({}, {})",
            crate::util::size::human_bytes(bytes),
            rate(bytes, seconds)
        ));
        published.push(Published {
            url,
            bytes,
            seconds,
        });
    }
    Ok(published)
}

/// "12.0 MiB/s" (or the time, for what is too small to measure).
pub fn rate(bytes: u64, seconds: f64) -> String {
    if seconds < 0.05 {
        return format!("{seconds:.2} s");
    }
    format!(
        "{}/s in {seconds:.1} s",
        crate::util::size::human_bytes((bytes as f64 / seconds) as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_uploaded_after_everything_they_vouch_for() {
        let files: Vec<PathBuf> = [
            "out/a.iso.sha256",
            "out/a.iso",
            "out/a.iso.md5sum",
            "out/b.qcow2.sha256",
            "out/a.iso.manifest.json",
            "out/b.qcow2",
            "out/a.lock.json",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let order: Vec<String> = upload_order(&files)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            order,
            [
                "out/a.iso",
                "out/a.iso.manifest.json",
                "out/a.iso.md5sum",
                "out/a.lock.json",
                "out/b.qcow2",
                "out/a.iso.sha256",
                "out/b.qcow2.sha256",
            ]
        );
    }

    #[test]
    fn a_netboot_seed_keeps_its_folder_in_the_object_name() {
        let out = Some(Path::new("out"));
        assert_eq!(object_name(Path::new("out/a.iso"), out), "a.iso");
        assert_eq!(
            object_name(Path::new("out/node-1.seed/user-data"), out),
            "node-1.seed/user-data"
        );
        assert_eq!(object_name(Path::new("elsewhere/a.iso"), out), "a.iso");
        assert_eq!(object_name(Path::new("dir/a.iso"), None), "a.iso");
    }
}
