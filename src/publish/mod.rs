//! Where a build's artifacts go after the output directory: `--publish
//! TARGET` (repeatable). Each kind of target is a variant of
//! [`PublishTarget`], parsed from the flag's value by its prefix, with its
//! own module.

pub mod registry;

use std::fmt;
use std::str::FromStr;

pub use registry::RegistryTarget;

/// One `--publish` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishTarget {
    /// `registry=REF[,tls-verify=false][,authfile=FILE]`: the `--type oci`
    /// image pushed to a registry (`--push REF` is the short form).
    Registry(RegistryTarget),
    /// `s3://BUCKET/PREFIX`: every file of the build uploaded, checksums
    /// last ([`crate::s3::publish`]).
    S3(crate::s3::S3Url),
}

impl FromStr for PublishTarget {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(rest) = text.strip_prefix("registry=") {
            return RegistryTarget::parse(rest).map(PublishTarget::Registry);
        }
        if text.starts_with("s3://") {
            return text
                .parse::<crate::s3::S3Url>()
                .map(PublishTarget::S3)
                .map_err(|e| e.to_string());
        }
        Err(format!(
            "'{}' is not a publish target (expected s3://BUCKET/PREFIX or registry=REF[,tls-verify=false][,authfile=FILE])",
            crate::util::redact::url(text)
        ))
    }
}

impl fmt::Display for PublishTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishTarget::Registry(r) => write!(f, "registry={}", r.reference),
            PublishTarget::S3(url) => write!(f, "{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_by_prefix() {
        let t: PublishTarget = "registry=localhost:5000/osforge/base:1,tls-verify=false"
            .parse()
            .unwrap();
        let PublishTarget::Registry(r) = &t else {
            panic!("{t:?}")
        };
        assert_eq!(r.reference, "localhost:5000/osforge/base:1");
        assert_eq!(r.tls_verify, Some(false));
        assert_eq!(t.to_string(), "registry=localhost:5000/osforge/base:1");
        let e = "ftp://x".parse::<PublishTarget>().unwrap_err();
        assert!(
            e.contains("expected s3://BUCKET/PREFIX or registry=REF"),
            "{e}"
        );
        let s3: PublishTarget = "s3://images/site-a".parse().unwrap();
        assert!(matches!(s3, PublishTarget::S3(_)), "{s3:?}");
    }
}
