//! Checks on single values: names, paths, modes, hashes.
//!
//! Each check returns the reason as a short phrase; the caller adds the file, line
//! and key. They run while a file is read (through the newtypes in `schema`), so a
//! bad value is reported in the file that wrote it, before anything is merged.

/// Characters of the crypt(3) base-64 alphabet.
fn is_crypt_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '/'
}

fn all_crypt_chars(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_crypt_char)
}

/// User and group names, as Debian's `adduser` accepts them by default.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 32;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid name (expected ^[a-z_][a-z0-9_-]*$, at most 32 characters)"
        ))
    }
}

/// An absolute, normalised path inside the image.
pub fn check_absolute_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("'{path}' is not an absolute path"));
    }
    if path.chars().any(char::is_control) {
        return Err("the path contains control characters".into());
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err(format!("'{path}' ends with '/'"));
    }
    if path
        .split('/')
        .skip(1)
        .any(|part| part.is_empty() && path != "/" || part == "." || part == "..")
    {
        return Err(format!(
            "'{path}' is not normalised (empty, '.' or '..' parts)"
        ));
    }
    Ok(())
}

/// An octal file mode written as text: `"0644"`, `"755"`, `"1777"`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let ok = (3..=4).contains(&text.len()) && text.chars().all(|c| ('0'..='7').contains(&c));
    if !ok {
        return Err(format!(
            "'{text}' is not an octal mode (expected 3 or 4 octal digits, like \"0644\")"
        ));
    }
    u32::from_str_radix(text, 8).map_err(|e| e.to_string())
}

/// A crypt(3) hash of a strong kind. The value is never echoed: if someone put a
/// plain password here, it must not end up in a terminal or a CI log as well.
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected a crypt(3) hash: $y$ (yescrypt), $6$ (SHA-512), $5$, $2b$ \
                            or $7$; plain passwords are never accepted";
    if hash.is_empty() || hash == "!" || hash == "*" || hash.starts_with("!$") {
        return Err("an empty or locked password is the default; leave password_hash unset".into());
    }
    if hash.starts_with("$1$") || hash.starts_with("$md5") || hash.starts_with("$sha1$") {
        return Err(format!(
            "MD5 and SHA-1 crypt hashes are too weak ({EXPECTED})"
        ));
    }
    let parts: Vec<&str> = hash.split('$').collect();
    let ok = match parts.as_slice() {
        // $id$[rounds=N$]salt$hash
        ["", id @ ("5" | "6"), rest @ ..] => {
            let tail = match rest {
                [rounds, tail @ ..]
                    if rounds
                        .strip_prefix("rounds=")
                        .is_some_and(|n| n.parse::<u32>().is_ok()) =>
                {
                    tail
                }
                _ => rest,
            };
            sha_crypt_tail_ok(id, tail)
        }
        ["", "y" | "gy", params, salt, digest] => {
            all_crypt_chars(params)
                && all_crypt_chars(salt)
                && digest.len() == 43
                && all_crypt_chars(digest)
        }
        ["", "7", params, digest] => {
            all_crypt_chars(params) && digest.len() == 43 && all_crypt_chars(digest)
        }
        ["", "2a" | "2b" | "2y", cost, digest] => {
            cost.len() == 2
                && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c))
                && digest.len() == 53
                && all_crypt_chars(digest)
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(EXPECTED.into()) }
}

/// `salt$digest` of SHA-crypt: a salt of up to 16 characters, a digest of 86
/// (SHA-512) or 43 (SHA-256) characters.
fn sha_crypt_tail_ok(id: &str, tail: &[&str]) -> bool {
    let digest_len = if id == "6" { 86 } else { 43 };
    matches!(tail, [salt, digest]
        if (1..=16).contains(&salt.len())
            && all_crypt_chars(salt)
            && digest.len() == digest_len
            && all_crypt_chars(digest))
}

/// A host name as RFC 1123 allows: dot-separated labels of letters, digits and
/// hyphens, no label longer than 63, the whole at most 253.
pub fn check_hostname(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid host name (letters, digits and '-' in dot-separated labels)"
        ))
    }
}

/// A package for mmdebstrap's `--include`: a Debian package name, optionally with
/// `:arch`, `=version` or `/release`.
pub fn check_package(spec: &str) -> Result<(), String> {
    let name_end = spec.find([':', '=', '/']).unwrap_or(spec.len());
    let (name, suffix) = spec.split_at(name_end);
    let mut chars = name.chars();
    let name_ok = name.len() >= 2
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let suffix_ok = suffix.is_empty()
        || (suffix.len() > 1 && !suffix.chars().any(|c| c.is_whitespace() || c.is_control()));
    if name_ok && suffix_ok {
        Ok(())
    } else {
        Err(format!("'{spec}' is not a Debian package name"))
    }
}

/// Names that end up as file names or unit/module identifiers: no spaces, no
/// slashes, nothing a shell or a path would treat specially.
fn check_identifier(what: &str, text: &str, extra: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && !text.starts_with('-')
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("'{text}' is not a valid {what}"))
    }
}

pub fn check_module_name(name: &str) -> Result<(), String> {
    check_identifier("kernel module name", name, "_-")
}

pub fn check_repo_name(name: &str) -> Result<(), String> {
    check_identifier("repository name (used as a file name)", name, "_.-")
}

/// systemd unit names, with a known unit type suffix.
pub fn check_unit_name(name: &str) -> Result<(), String> {
    const TYPES: [&str; 11] = [
        "service",
        "socket",
        "timer",
        "target",
        "mount",
        "automount",
        "path",
        "slice",
        "scope",
        "device",
        "swap",
    ];
    check_identifier("systemd unit name", name, ":_.@\\-")?;
    match name.rsplit_once('.') {
        Some((stem, kind)) if !stem.is_empty() && TYPES.contains(&kind) => Ok(()),
        _ => Err(format!(
            "'{name}' has no unit type suffix (expected one of .{})",
            TYPES.join(", .")
        )),
    }
}

pub fn check_sysctl_key(key: &str) -> Result<(), String> {
    check_identifier("sysctl key", key, "_.-/*")
}

/// Locales as glibc names them: `en_US.UTF-8`, `C.UTF-8`, `de_DE@euro`.
pub fn check_locale(locale: &str) -> Result<(), String> {
    check_identifier("locale", locale, "_.-@")
}

/// Time zones as tzdata names them: `Etc/UTC`, `Europe/Berlin`, `UTC`.
pub fn check_timezone(zone: &str) -> Result<(), String> {
    let ok = !zone.is_empty()
        && !zone.starts_with('/')
        && zone.split('/').all(|part| {
            !part.is_empty()
                && part != ".."
                && part != "."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("'{zone}' is not a time zone name (like Etc/UTC)"))
    }
}

/// One line of `authorized_keys`: optional options, then a key type and the key.
pub fn check_ssh_key(line: &str) -> Result<(), String> {
    const TYPES: [&str; 4] = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-"];
    if line.contains(['\n', '\r']) {
        return Err("an SSH key must be a single line".into());
    }
    let has_key = line
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| TYPES.iter().any(|t| w[0].starts_with(t)) && w[1].starts_with("AAAA"));
    if has_key {
        Ok(())
    } else {
        Err("not an SSH public key (expected '<type> AAAA... [comment]', like ssh-ed25519)".into())
    }
}

/// Text that ends up on one line of a configuration file.
pub fn check_single_line(what: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{what} must be one line without control characters"
        ));
    }
    Ok(())
}

/// A repository URI as apt takes it.
pub fn check_uri(uri: &str) -> Result<(), String> {
    let ok = uri.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            && !rest.is_empty()
    }) && !uri.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!("'{uri}' is not a URI (expected scheme://...)"))
    }
}

/// ISO 9660 volume identifiers are at most 32 characters; cloud-init finds its
/// config drive by the label `config-2`, so lower case and '-' are allowed.
pub fn check_volume_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 32 {
        return Err(format!("'{id}' must be 1 to 32 characters"));
    }
    check_identifier("volume id (letters, digits, '_', '-', '.')", id, "_-.")
}

/// Debian architecture names mmdebstrap accepts.
pub const DEBIAN_ARCHES: [&str; 10] = [
    "amd64", "arm64", "armel", "armhf", "i386", "loong64", "mips64el", "ppc64el", "riscv64",
    "s390x",
];

pub fn check_arch(arch: &str) -> Result<(), String> {
    if DEBIAN_ARCHES.contains(&arch) {
        Ok(())
    } else {
        Err(format!(
            "'{arch}' is not a Debian architecture (expected one of {})",
            DEBIAN_ARCHES.join(", ")
        ))
    }
}

/// A suite or codename (`bookworm`, `stable`, `bookworm-backports`) or, for flat
/// repositories, a path ending in `/` (`./`).
pub fn check_suite(suite: &str) -> Result<(), String> {
    check_identifier("suite", suite, "-_./").or_else(|e| {
        if suite == "./" || suite == "/" {
            Ok(())
        } else {
            Err(e)
        }
    })
}

/// An archive component: `main`, `non-free-firmware`, `main/debian-installer`.
pub fn check_component(component: &str) -> Result<(), String> {
    check_identifier("component", component, "-_/")
}

/// The first field of a limits.conf line: a user, `@group`, `*` or a uid range.
pub fn check_limit_domain(domain: &str) -> Result<(), String> {
    let ok = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-@*%:.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{domain}' is not a limits.conf domain (a user, @group, * or %group)"
        ))
    }
}

/// Template variable names must be usable as tera identifiers.
pub fn check_variable_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid variable name (letters, digits and '_', not starting with a digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like real hashes; the digests are filler of the right length.
    fn sha512() -> String {
        format!(
            "$6$saltsalt${}",
            "qFmFH.bQmm/7".repeat(8).get(..86).unwrap()
        )
    }
    fn yescrypt() -> String {
        format!(
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1${}",
            "X3DX6M94c7o.".repeat(4).get(..43).unwrap()
        )
    }

    #[test]
    fn strong_crypt_hashes_are_accepted() {
        assert_eq!(check_password_hash(&sha512()), Ok(()));
        assert_eq!(check_password_hash(&yescrypt()), Ok(()));
        let rounds = sha512().replacen("$6$", "$6$rounds=5000$", 1);
        assert_eq!(check_password_hash(&rounds), Ok(()));
        let bcrypt = format!("$2b$12${}", "a".repeat(53));
        assert_eq!(check_password_hash(&bcrypt), Ok(()));
    }

    #[test]
    fn plain_passwords_weak_hashes_and_garbage_are_rejected_without_echo() {
        for bad in [
            "$1$abc$def",
            "!",
            "",
            "$6$salt$short",
            "$y$j9T$salt",
            "$6$$x",
        ] {
            assert!(check_password_hash(bad).is_err(), "{bad}");
        }
        for plain in ["hunter2", "correct horse battery staple"] {
            let e = check_password_hash(plain).unwrap_err();
            assert!(!e.contains(plain), "the value must not be echoed: {e}");
            assert!(e.contains("plain passwords are never accepted"), "{e}");
        }
    }

    #[test]
    fn user_names_follow_adduser() {
        assert!(check_user_name("ops").is_ok());
        assert!(check_user_name("_svc-1").is_ok());
        for bad in ["Ops", "1ops", "o ps", "", "a".repeat(33).as_str()] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_are_three_or_four_octal_digits() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("1777"), Ok(0o1777));
        assert_eq!(parse_mode("755"), Ok(0o755));
        for bad in ["644a", "0888", "64", "01234"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_must_be_absolute_and_normalised() {
        assert!(check_absolute_path("/etc/motd").is_ok());
        assert!(check_absolute_path("/").is_ok());
        for bad in ["etc/motd", "/etc/", "/etc//motd", "/etc/../x", "/a\nb"] {
            assert!(check_absolute_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_packages_units_and_keys_are_checked() {
        assert!(check_hostname("node-1.example").is_ok());
        assert!(check_hostname("-bad").is_err());
        assert!(check_hostname("has space").is_err());
        assert!(check_package("linux-image-amd64").is_ok());
        assert!(check_package("libc6:amd64").is_ok());
        assert!(check_package("foo=1.2-3").is_ok());
        assert!(check_package("Bad_Name").is_err());
        assert!(check_unit_name("ssh.service").is_ok());
        assert!(check_unit_name("getty@ttyS0.service").is_ok());
        assert!(check_unit_name("ssh").is_err());
        assert!(check_ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI ops@example").is_ok());
        assert!(check_ssh_key("hunter2").is_err());
        assert!(check_timezone("Etc/UTC").is_ok());
        assert!(check_timezone("../etc/passwd").is_err());
        assert!(check_uri("https://deb.example/debian").is_ok());
        assert!(check_uri("deb.example/debian").is_err());
        assert!(check_volume_id("config-2").is_ok());
        assert!(check_volume_id(&"A".repeat(33)).is_err());
    }
}
