//! Pushing the `--type oci` image (`NAME.oci.tar`) to a registry with
//! skopeo, for the reasons [`crate::rootfs::image`] pulls with it: the
//! containers project's own client, with `auth.json`, registries.conf and
//! the proxy variables as podman uses them. `skopeo copy` keeps the
//! archive's manifest as it is when the registry takes OCI manifests, so
//! the pushed digest is the local one; it is read back with `--digestfile`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::rootfs::Network;
use crate::util::redact;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pushing {archive} to docker://{reference}: {message}")]
    Push {
        archive: String,
        reference: String,
        message: String,
    },
    #[error("cannot run skopeo (install it: apt-get install skopeo): {0}")]
    Spawn(std::io::Error),
    #[error("reading {path}: {message}")]
    Archive { path: PathBuf, message: String },
}

/// A registry to push to: `REF` with the options the flag's value gave;
/// `None` options take `--tls-verify` / `--authfile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTarget {
    /// `[HOST[:PORT]/]NAME[:TAG|@DIGEST]`, without `docker://`.
    pub reference: String,
    pub tls_verify: Option<bool>,
    pub authfile: Option<PathBuf>,
}

impl RegistryTarget {
    /// `REF[,tls-verify=BOOL][,authfile=FILE]`; a `docker://` prefix is allowed.
    pub fn parse(text: &str) -> Result<RegistryTarget, String> {
        let mut parts = text.split(',');
        let reference = parts.next().unwrap_or_default();
        let reference = reference.strip_prefix("docker://").unwrap_or(reference);
        check_reference(reference)?;
        let mut target = RegistryTarget {
            reference: reference.to_string(),
            tls_verify: None,
            authfile: None,
        };
        for option in parts {
            match option.split_once('=') {
                Some(("tls-verify", value)) => {
                    target.tls_verify = Some(value.parse().map_err(|_| {
                        format!("registry {reference}: tls-verify={value}: expected true or false")
                    })?)
                }
                Some(("authfile", path)) if !path.is_empty() => {
                    target.authfile = Some(PathBuf::from(path))
                }
                _ => {
                    return Err(format!(
                        "registry {reference}: unknown option '{option}' (expected tls-verify=BOOL or authfile=FILE)"
                    ));
                }
            }
        }
        Ok(target)
    }
}

/// The shape of a Docker reference (distribution's grammar, simplified):
/// caught here, before the build, rather than by skopeo after it.
fn check_reference(reference: &str) -> Result<(), String> {
    let re = regex::Regex::new(
        r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})?$",
    )
    .expect("a valid regex");
    if re.is_match(reference) {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not an image reference (expected [HOST[:PORT]/]NAME[:TAG], NAME in lowercase)",
            redact::url(reference)
        ))
    }
}

/// What was pushed where, for the log and the `--json` report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    pub reference: String,
    /// The manifest digest the registry has.
    pub digest: String,
    /// The manifest digest of the local archive; equal to `digest` unless
    /// skopeo had to convert the manifest for the registry.
    pub local_digest: String,
}

/// Pushes `archive` (an oci-archive) to `target`. The options' defaults
/// (`--tls-verify`, `--authfile`) are resolved by the caller.
pub fn push(
    archive: &Path,
    reference: &str,
    tls_verify: bool,
    authfile: Option<&Path>,
    network: &Network,
    scratch: &Path,
) -> Result<Pushed, Error> {
    let local_digest = archive_digest(archive)?;
    let digest_file = scratch.join("pushed.digest");
    let mut cmd = Command::new("skopeo");
    cmd.envs(network.environment())
        .args(["copy", "--quiet", "--digestfile"])
        .arg(&digest_file);
    if !tls_verify {
        cmd.arg("--dest-tls-verify=false");
    }
    if let Some(auth) = authfile {
        cmd.arg("--dest-authfile").arg(auth);
    }
    cmd.arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{reference}"));
    let out = crate::util::process::output(&mut cmd).map_err(Error::Spawn)?;
    let fail = |message: String| Error::Push {
        archive: archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        reference: reference.to_string(),
        message,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = crate::util::process::last_line(&stderr).unwrap_or("skopeo gave no reason");
        let credentials = authfile.map(credentials_in).unwrap_or_default();
        let hidden: Vec<&str> = credentials.iter().map(String::as_str).collect();
        let line = network.redact(&redact::secrets(&redact::url(line), &hidden));
        return Err(fail(line));
    }
    let digest = std::fs::read_to_string(&digest_file)
        .map_err(|e| fail(format!("skopeo wrote no digest file: {e}")))?
        .trim()
        .to_string();
    Ok(Pushed {
        reference: reference.to_string(),
        digest,
        local_digest,
    })
}

/// The manifest digest an oci-archive's `index.json` names.
pub fn archive_digest(archive: &Path) -> Result<String, Error> {
    let bad = |message: String| Error::Archive {
        path: archive.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(archive).map_err(|e| bad(e.to_string()))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let is_index = entry
            .path()
            .is_ok_and(|p| p.strip_prefix("./").unwrap_or(&p) == Path::new("index.json"));
        if is_index {
            let index: serde_json::Value =
                serde_json::from_reader(entry).map_err(|e| bad(format!("index.json: {e}")))?;
            return index["manifests"][0]["digest"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("index.json names no manifest".into()));
        }
    }
    Err(bad("no index.json: not an oci-archive".into()))
}

/// What of an auth.json must never be shown: each `auth` (base64 of
/// `user:password`), its password, and identity and registry tokens. An
/// unreadable file gives nothing to hide (skopeo reports it).
fn credentials_in(authfile: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(authfile) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Some(auths) = json["auths"].as_object() {
        for entry in auths.values() {
            for key in ["auth", "identitytoken", "registrytoken"] {
                if let Some(value) = entry[key].as_str().filter(|v| !v.is_empty()) {
                    found.push(value.to_string());
                }
            }
            let decoded = entry["auth"]
                .as_str()
                .and_then(crate::util::base64::decode_user_password);
            if let Some((_, password)) = decoded {
                found.push(password);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked_and_options_parsed() {
        let t = RegistryTarget::parse("docker://localhost:5000/osforge/test:1").unwrap();
        assert_eq!(t.reference, "localhost:5000/osforge/test:1");
        assert_eq!((t.tls_verify, t.authfile), (None, None));
        let t = RegistryTarget::parse("reg.example/a/b,tls-verify=false,authfile=/x/auth.json")
            .unwrap();
        assert_eq!(t.tls_verify, Some(false));
        assert_eq!(t.authfile.as_deref(), Some(Path::new("/x/auth.json")));
        for bad in [
            "",
            "Upper/Case",
            "a/b:",
            "a//b",
            "a/b,tls-verify=maybe",
            "a,x=1",
        ] {
            assert!(RegistryTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_auth_json_s_credentials_are_found_to_be_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth.json");
        // base64("robot:s3cr3t-pass")
        std::fs::write(
            &auth,
            r#"{"auths":{"reg.example":{"auth":"cm9ib3Q6czNjcjN0LXBhc3M="}}}"#,
        )
        .unwrap();
        let found = credentials_in(&auth);
        assert_eq!(found, ["cm9ib3Q6czNjcjN0LXBhc3M=", "s3cr3t-pass"]);
    }
}
