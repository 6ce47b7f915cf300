//! `images:`: container images baked into the image for containerd, so that
//! an air-gapped node has them at first boot (`pipeline::images` pulls them,
//! `rootfs::preload` bakes them). The keys are those of BOSH's
//! import-images job, so its manifests' entries can be copied over:
//!
//! ```yaml
//! images:
//!   - name: registry.example.com/debian-base:v1.0.0
//!     auth: dXNlcm5hbWU6cGFzc3dvcmQ=          # base64 user:password (BOSH's form)
//!     retagAs: registry.k8s.io/debian-base:v2.0.0
//!   - name: nginx:1.25                        # docker.io/library/nginx:1.25
//!     auth: {file: auth/registry.json}        # a containers auth.json, relative to this profile
//!                                             # (also: authfile: auth/registry.json)
//!   - {name: "localhost:5000/app:1", tls_verify: false}   # plain-HTTP registry
//! ```
//!
//! `auth` may be a template (`"{{ registry_auth }}"` with a `secret:`
//! variable) so that the credential stays out of the profile; either way it
//! is hidden from logs and reports and never written into the image.

use std::path::PathBuf;

use serde::Serialize;

use super::error::{KeyPath, ProfileError};
use super::freeze::Freezer;
use super::schema::{PreloadAuthDoc, PreloadImageDoc};
use crate::util::image_ref;

/// One image to bake in, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreloadImage {
    /// What is pulled: the name, fully qualified (`docker.io/library/nginx:1.25`).
    pub name: String,
    /// The names containerd gets: `name`, then `retagAs` (also qualified:
    /// the kubelet looks images up by the qualified name).
    pub tags: Vec<String>,
    /// base64 `user:password`; a secret, so never serialised.
    #[serde(skip)]
    pub auth: Option<String>,
    pub authfile: Option<PathBuf>,
    pub tls_verify: bool,
}

/// `user:password` from BOSH's base64 `auth`, with a user; `None` when it
/// is not that.
fn decode_auth(auth: &str) -> Option<(String, String)> {
    crate::util::base64::decode_user_password(auth).filter(|(user, _)| !user.is_empty())
}

pub(crate) fn freeze_images(
    docs: &[PreloadImageDoc],
    fz: &Freezer<'_>,
) -> Result<Vec<PreloadImage>, ProfileError> {
    let mut images: Vec<PreloadImage> = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let at = |key: &str| KeyPath::parse(&format!("images[{i}].{key}"));
        if doc.name.is_empty() {
            return Err(fz.error(
                &KeyPath::parse(&format!("images[{i}]")),
                "missing name (the image to pull, like registry.example.com/app:1.0)",
            ));
        }
        let name = image_ref::normalize(&doc.name).map_err(|e| fz.error(&at("name"), e))?;
        let mut tags = vec![name.clone()];
        if let Some(retag) = &doc.retag_as {
            let retag = image_ref::normalize(retag).map_err(|e| fz.error(&at("retagAs"), e))?;
            if retag.contains('@') {
                return Err(fz.error(
                    &at("retagAs"),
                    format!("'{retag}' has a digest; retagAs takes a name and tag"),
                ));
            }
            if !tags.contains(&retag) {
                tags.push(retag);
            }
        }
        if let Some(earlier) = images
            .iter()
            .flat_map(|image| &image.tags)
            .find(|t| tags.contains(t))
        {
            return Err(fz.error(
                &at("name"),
                format!("'{earlier}' is named by an earlier entry too: each name is baked once"),
            ));
        }
        // `auth` is BOSH's base64 user:password, or names an auth.json:
        // `{file: F}`, or a string ending in .json that is not base64 of one.
        let (inline, file) = match &doc.auth {
            Some(PreloadAuthDoc::File(f)) => (None, Some(f.file.as_str())),
            Some(PreloadAuthDoc::Inline(text))
                if text.trim().ends_with(".json") && decode_auth(text).is_none() =>
            {
                (None, Some(text.trim()))
            }
            Some(PreloadAuthDoc::Inline(text)) => (Some(text.trim()), None),
            None => (None, None),
        };
        if (inline.is_some() || file.is_some()) && doc.authfile.is_some() {
            return Err(fz.error(&at("auth"), "give auth or authfile, not both"));
        }
        let auth = match inline {
            Some(auth) => {
                // Hidden before any error could show it.
                crate::util::redact::register_secret(auth);
                let Some((_, password)) = decode_auth(auth) else {
                    return Err(fz.error(
                        &at("auth"),
                        "not base64 of user:password (as BOSH import-images takes it: echo -n user:password | base64) nor {file: auth.json}",
                    ));
                };
                // Shorter passwords would be hidden wherever the same few
                // characters appear in a log line (secret: variables' bound).
                if password.len() >= super::secrets::MIN_LEN {
                    crate::util::redact::register_secret(&password);
                }
                Some(auth.to_string())
            }
            None => None,
        };
        let (file_key, file) = match (file, &doc.authfile) {
            (Some(f), _) => ("auth", Some(f)),
            (None, Some(f)) => ("authfile", Some(f.as_str())),
            (None, None) => ("authfile", None),
        };
        let authfile = match file {
            Some(relative) => {
                let located = fz.locate_file(&at(file_key), relative)?;
                if !located.is_file() {
                    return Err(fz.error(
                        &at(file_key),
                        format!("{} does not exist", located.display()),
                    ));
                }
                Some(located)
            }
            None => None,
        };
        images.push(PreloadImage {
            name,
            tags,
            auth,
            authfile,
            tls_verify: doc.tls_verify.unwrap_or(true),
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_is_bosh_base64_of_user_and_password() {
        // The value in BOSH import-images' own spec example.
        assert_eq!(
            decode_auth("dXNlcm5hbWU6cGFzc3dvcmQ="),
            Some(("username".into(), "password".into()))
        );
        assert_eq!(decode_auth("bm8tY29sb24="), None); // "no-colon"
        assert_eq!(decode_auth("not base64!"), None);
        assert_eq!(decode_auth("OnB3"), None); // ":pw": no user
    }
}
