//! Container image names as containerd and the kubelet know them.
//!
//! `nginx:1.25`, `library/nginx` and `docker.io/library/nginx:1.25` name one
//! image; containerd stores the full form, and the kubelet looks images up by
//! it (`crictl pull nginx` records `docker.io/library/nginx:latest`). A name
//! baked under its short form would be invisible to Kubernetes, so preloaded
//! images are recorded fully qualified: docker's rules (distribution's
//! `reference.ParseNormalizedNamed`), written out rather than approximated.

/// The registry an unqualified name refers to.
const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's namespace for single-component names.
const OFFICIAL_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";

/// `name` fully qualified: domain, path, and a tag (`latest` unless it has
/// one) or a digest. `Err` says what is wrong with it.
pub fn normalize(name: &str) -> Result<String, String> {
    let name = name.strip_prefix("docker://").unwrap_or(name);
    if name.is_empty() {
        return Err("an image name is empty".into());
    }
    let (remainder, digest) = match name.split_once('@') {
        Some((rest, digest)) => {
            check_digest(digest)?;
            (rest, Some(digest))
        }
        None => (name, None),
    };
    let (repository, tag) = split_tag(remainder);
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let (domain, path) = match repository.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_string())
        }
        _ => (DEFAULT_DOMAIN, repository.to_string()),
    };
    check_domain(domain)?;
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{path}")
    } else {
        path
    };
    check_path(&path)?;
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(tag), _) => {
            out.push(':');
            out.push_str(tag);
        }
        (None, None) => {
            out.push(':');
            out.push_str(DEFAULT_TAG);
        }
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    Ok(out)
}

/// The repository and the tag of a name without its digest. A tag is after
/// the last ':' that follows the last '/' (a ':' before it is a registry's
/// port).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    }
}

/// The tag of a name (`1.25` of `docker.io/library/nginx:1.25`), if it has one.
pub fn tag(name: &str) -> Option<&str> {
    split_tag(name.split('@').next().unwrap_or(name)).1
}

/// The registry host (with port) of a normalised name.
pub fn domain(normalized: &str) -> &str {
    normalized.split('/').next().unwrap_or(normalized)
}

fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let ok = tag.len() <= 128
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{tag}' is not a tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        ))
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "'{digest}' is not a digest (expected sha256: and 64 lowercase hex digits)"
        )),
    }
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("'{domain}' is not a registry host[:port]"))
    }
}

/// Path components: lowercase letters and digits, separated by `.`, `_`,
/// `__` or runs of `-` (distribution's grammar).
fn check_path(path: &str) -> Result<(), String> {
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        !c.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && !c.contains("..")
            && !c.contains("___")
    };
    if path.len() <= 255 && path.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "'{path}' is not a repository path (lowercase letters, digits and . _ - between '/')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_qualified_as_docker_does() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
            (
                "docker.io/library/nginx:1.25",
                "docker.io/library/nginx:1.25",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:1", "localhost:5000/app:1"),
            ("127.0.0.1:5000/team/app:v2", "127.0.0.1:5000/team/app:v2"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("docker://quay.io/a/b:c", "quay.io/a/b:c"),
        ];
        for (given, want) in cases {
            assert_eq!(normalize(given).as_deref(), Ok(want), "{given}");
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("nginx@{digest}")).unwrap(),
            format!("docker.io/library/nginx@{digest}")
        );
        assert_eq!(
            normalize(&format!("r.io/x:1@{digest}")).unwrap(),
            format!("r.io/x:1@{digest}")
        );
        assert_eq!(domain("localhost:5000/app:1"), "localhost:5000");
        assert_eq!(tag("docker.io/library/nginx:1.25"), Some("1.25"));
        assert_eq!(tag("localhost:5000/app:1"), Some("1"));
        assert_eq!(tag("localhost:5000/app"), None);
        assert_eq!(tag(&format!("r.io/a@{digest}")), None);
    }

    #[test]
    fn bad_names_say_which_part_is_wrong() {
        for (given, part) in [
            ("", "empty"),
            ("Nginx", "repository path"),
            ("nginx:", "tag"),
            ("nginx:-x", "tag"),
            ("r.io/a//b", "repository path"),
            ("r.io:99999/a", "registry"),
            ("nginx@sha256:abc", "digest"),
            ("a/b c", "repository path"),
        ] {
            let err = normalize(given).unwrap_err();
            assert!(err.contains(part), "{given}: {err}");
        }
    }
}
