//! The SBOM beside each artifact: an SPDX 2.3 JSON document with one
//! package per installed Debian package and one for the image itself.
//!
//! Reproducible builds must give identical SBOMs, so nothing in it comes
//! from the clock or the machine unless SOURCE_DATE_EPOCH is unset: the
//! document namespace is derived from the artifact's sha256 and the
//! creation time is SOURCE_DATE_EPOCH. Licenses are `NOASSERTION`: Debian
//! records them in /usr/share/doc/*/copyright, free-form more often than
//! machine-readable, and a guessed license is worse than none.

use serde_json::{Value, json};

use super::dpkg::DebPackage;
use crate::util::time::rfc3339_utc;

pub const SPDX_VERSION: &str = "SPDX-2.3";
/// SPDX requires the document's own data to be CC0-1.0.
pub const DATA_LICENSE: &str = "CC0-1.0";
const NOASSERTION: &str = "NOASSERTION";
/// The prefix of every document namespace osforge writes. spdx.org's
/// `spdxdocs` path is the one the SPDX spec uses in its examples for
/// documents without a home of their own.
const NAMESPACE_PREFIX: &str = "https://spdx.org/spdxdocs/osforge";
pub const IMAGE_SPDXID: &str = "SPDXRef-Image";

/// What the SBOM describes.
pub struct SbomInputs<'a> {
    /// The artifact's file name.
    pub artifact_name: &'a str,
    pub artifact_sha256: &'a str,
    /// The profile the image was built from, when it was.
    pub profile: Option<&'a str>,
    pub packages: &'a [DebPackage],
    /// Unix seconds: SOURCE_DATE_EPOCH, else the time of writing.
    pub created_unix: u64,
}

/// The SPDX document as JSON.
pub fn document(inputs: &SbomInputs) -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let mut packages = vec![image_package(inputs)];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": IMAGE_SPDXID,
    })];
    let mut used_ids = std::collections::BTreeSet::new();
    for p in inputs.packages {
        let id = unique_id(&mut used_ids, p);
        relationships.push(json!({
            "spdxElementId": IMAGE_SPDXID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
        packages.push(deb_package(p, &id));
    }
    json!({
        "spdxVersion": SPDX_VERSION,
        "dataLicense": DATA_LICENSE,
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": inputs.artifact_name,
        "documentNamespace": namespace(inputs.artifact_name, inputs.artifact_sha256),
        "creationInfo": {
            "created": rfc3339_utc(inputs.created_unix),
            "creators": [format!("Tool: osforge-{version}")],
        },
        "documentDescribes": [IMAGE_SPDXID],
        "packages": packages,
        "relationships": relationships,
    })
}

/// A URI unique to the artifact: its name and its sha256.
pub fn namespace(artifact_name: &str, sha256: &str) -> String {
    let name: String = artifact_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{NAMESPACE_PREFIX}/{name}-{sha256}")
}

fn image_package(inputs: &SbomInputs) -> Value {
    let mut p = json!({
        "name": inputs.artifact_name,
        "SPDXID": IMAGE_SPDXID,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "checksums": [{"algorithm": "SHA256", "checksumValue": inputs.artifact_sha256}],
    });
    if let Some(profile) = inputs.profile {
        p["comment"] = json!(format!("built by osforge from profile {profile}"));
    }
    p
}

fn deb_package(p: &DebPackage, id: &str) -> Value {
    let mut v = json!({
        "name": p.name,
        "SPDXID": id,
        "versionInfo": p.version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(p),
        }],
    });
    if let Some(m) = &p.maintainer {
        v["supplier"] = json!(supplier(m));
    }
    if let Some(h) = &p.homepage {
        v["homepage"] = json!(h);
    }
    v
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH`, with the name and version
/// percent-encoded as the purl spec asks (`+` and an epoch's `:` are not
/// allowed as they are).
pub fn purl(p: &DebPackage) -> String {
    format!(
        "pkg:deb/debian/{}@{}?arch={}",
        percent_encode(&p.name),
        percent_encode(&p.version),
        percent_encode(&p.architecture)
    )
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SPDX's `Person: NAME (EMAIL)` from Debian's `NAME <EMAIL>`. Teams are
/// people too here: Debian does not say which maintainers are groups.
fn supplier(maintainer: &str) -> String {
    match maintainer.split_once('<') {
        Some((name, rest)) => {
            let email = rest.trim_end().trim_end_matches('>');
            format!("Person: {} ({email})", name.trim())
        }
        None => format!("Person: {}", maintainer.trim()),
    }
}

/// `SPDXRef-Package-deb-NAME-ARCH`, with characters SPDX ids cannot hold
/// (`+` in `libstdc++6`) spelled out, and a counter on the rare clash.
fn unique_id(used: &mut std::collections::BTreeSet<String>, p: &DebPackage) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .flat_map(|c| match c {
                '+' => "plus".chars().collect::<Vec<_>>(),
                c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => vec![c],
                _ => vec!['-'],
            })
            .collect()
    };
    let base = format!(
        "SPDXRef-Package-deb-{}-{}",
        clean(&p.name),
        clean(&p.architecture)
    );
    let mut id = base.clone();
    let mut n = 2;
    while !used.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> DebPackage {
        DebPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            maintainer: Some("Debian Kernel Team <debian-kernel@lists.debian.org>".into()),
            homepage: None,
        }
    }

    #[test]
    fn purls_encode_epochs_and_plus_signs() {
        assert_eq!(
            purl(&pkg("libstdc++6", "1:12.2.0-14+deb12u1")),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14%2Bdeb12u1?arch=amd64"
        );
    }

    #[test]
    fn a_document_describes_the_image_which_contains_each_package() {
        let packages = [
            pkg("linux-image-amd64", "6.1.148-1"),
            pkg("libstdc++6", "12.2.0-14"),
        ];
        let doc = document(&SbomInputs {
            artifact_name: "node 1.iso",
            artifact_sha256: "ab12",
            profile: Some("ephemeral"),
            packages: &packages,
            created_unix: 1_700_000_000,
        });
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(
            doc["documentNamespace"],
            "https://spdx.org/spdxdocs/osforge/node-1.iso-ab12"
        );
        assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        let pkgs = doc["packages"].as_array().unwrap();
        assert_eq!(pkgs[0]["checksums"][0]["checksumValue"], "ab12");
        assert_eq!(pkgs[1]["versionInfo"], "6.1.148-1");
        assert_eq!(
            pkgs[1]["supplier"],
            "Person: Debian Kernel Team (debian-kernel@lists.debian.org)"
        );
        assert_eq!(
            pkgs[2]["SPDXID"],
            "SPDXRef-Package-deb-libstdcplusplus6-amd64"
        );
        let contains: Vec<&str> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .map(|r| r["relatedSpdxElement"].as_str().unwrap())
            .collect();
        assert_eq!(contains.len(), 2);
        assert!(
            contains
                .iter()
                .all(|id| pkgs.iter().any(|p| p["SPDXID"] == *id))
        );
    }
}
