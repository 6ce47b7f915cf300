//! Secret variables: a profile variable whose value is read at build time
//! from an environment variable or a file instead of being written in the
//! profile.
//!
//! ```yaml
//! variables:
//!   admin_hash: {secret: {env: OSFORGE_SECRET_ADMIN_HASH}}
//!   api_token: {secret: {file: secrets/token}}   # relative to this profile
//! ```
//!
//! The value renders like any other variable (OS values, cloud-init, kernel
//! command line), so it ends up in the image where the profile puts it, but
//! osforge hides it everywhere it writes for people or caches: logs, errors,
//! `--json` reports, cache manifests (the key still depends on it), the
//! build manifest and SBOM (which hold digests and package lists only). A
//! value that reaches a log line anyway fails the build.
//!
//! Profiles are input from others, so a profile reads only environment
//! variables named `OSFORGE_SECRET_*` (not the build host's credentials) and
//! only files inside its own folder (unless OSFORGE_ALLOW_FILES_OUTSIDE=1).

use std::path::Path;

use super::error::ProfileError;
use super::freeze::is_inside;
use super::load::{SearchPath, tidy};
use super::node::{Node, Value};

/// The prefix of the environment variables a profile may read.
pub const ENV_PREFIX: &str = "OSFORGE_SECRET_";

/// Shorter values would be hidden wherever the same few characters appear.
pub(crate) const MIN_LEN: usize = 8;

/// Replaces every `{secret: {...}}` variable in `tree` by its value and
/// registers the value for hiding; returns the names of those variables.
pub(crate) fn resolve(tree: &mut Node, search: &SearchPath) -> Result<Vec<String>, ProfileError> {
    let Value::Map(root) = &mut tree.value else {
        return Ok(Vec::new());
    };
    let Some(variables) = root.iter_mut().find(|e| e.key == "variables") else {
        return Ok(Vec::new());
    };
    let Value::Map(entries) = &mut variables.value.value else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in entries.iter_mut() {
        let Some(reference) = secret_reference(&entry.value) else {
            continue;
        };
        let value = read(reference, &entry.value, search)?;
        crate::util::redact::register_secret(&value);
        entry.value.value = Value::Str(value);
        names.push(entry.key.clone());
    }
    Ok(names)
}

/// The `{...}` of a `{secret: {...}}` value.
fn secret_reference(node: &Node) -> Option<&Node> {
    match &node.value {
        Value::Map(entries) if entries.len() == 1 && entries[0].key == "secret" => {
            Some(&entries[0].value)
        }
        _ => None,
    }
}

fn read(reference: &Node, at: &Node, search: &SearchPath) -> Result<String, ProfileError> {
    let fields = match &reference.value {
        Value::Map(entries) if entries.len() == 1 => &entries[0],
        _ => {
            return Err(reference.origin.error(
                "expected {env: OSFORGE_SECRET_NAME} or {file: PATH} as the secret's source",
            ));
        }
    };
    let Value::Str(name) = &fields.value.value else {
        return Err(fields.value.origin.error("expected a string"));
    };
    let value = match fields.key.as_str() {
        "env" => {
            if !name.starts_with(ENV_PREFIX) {
                return Err(fields.value.origin.error(format!(
                    "a profile reads only environment variables named {ENV_PREFIX}*, not '{name}' (export {ENV_PREFIX}{name}=...)"
                )));
            }
            std::env::var(name).map_err(|_| {
                fields
                    .value
                    .origin
                    .error(format!("the environment variable {name} is not set"))
            })?
        }
        "file" => {
            let base = at.origin.file.parent().unwrap_or(Path::new("."));
            let file = tidy(&base.join(name));
            if !(search.allow_files_outside || is_inside(base, &file)) {
                return Err(fields.value.origin.error(format!(
                    "'{name}' is outside the profile's folder {}/ (set {}=1 to allow it)",
                    base.display(),
                    SearchPath::ALLOW_OUTSIDE_ENV
                )));
            }
            let text = std::fs::read_to_string(&file).map_err(|e| {
                fields
                    .value
                    .origin
                    .error(format!("cannot read {}: {e}", file.display()))
            })?;
            // A file written by `echo` ends with a newline that is not the secret's.
            text.strip_suffix('\n').unwrap_or(&text).to_string()
        }
        other => {
            return Err(fields.key_origin.error(format!(
                "unknown secret source '{other}': expected env or file"
            )));
        }
    };
    if value.len() < MIN_LEN {
        return Err(fields.value.origin.error(format!(
            "the secret is {} bytes long; at least {MIN_LEN} are needed to keep it out of logs reliably",
            value.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path, text: &str) -> Node {
        Node::parse(text, &dir.join("p.yaml")).unwrap()
    }

    fn variable<'a>(tree: &'a Node, name: &str) -> &'a Value {
        let Value::Map(root) = &tree.value else {
            panic!()
        };
        let vars = &root.iter().find(|e| e.key == "variables").unwrap().value;
        let Value::Map(entries) = &vars.value else {
            panic!()
        };
        &entries.iter().find(|e| e.key == name).unwrap().value.value
    }

    #[test]
    fn env_and_file_secrets_become_values_and_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "file-secret-value\n").unwrap();
        // SAFETY: this test's own variable, read only below.
        unsafe { std::env::set_var("OSFORGE_SECRET_TEST_A", "env-secret-value") };
        let mut t = tree(
            dir.path(),
            "variables: {a: {secret: {env: OSFORGE_SECRET_TEST_A}}, b: {secret: {file: token}}, c: plain}\n",
        );
        let names = resolve(&mut t, &SearchPath::new(vec![], vec![])).unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(variable(&t, "a"), &Value::Str("env-secret-value".into()));
        assert_eq!(variable(&t, "b"), &Value::Str("file-secret-value".into()));
        assert_eq!(
            crate::util::redact::hide("x file-secret-value env-secret-value"),
            "x *** ***"
        );
    }

    #[test]
    fn a_host_variable_a_file_outside_or_a_short_value_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let search = SearchPath::new(vec![], vec![]);
        let err = |text: &str| {
            let mut t = tree(dir.path(), text);
            resolve(&mut t, &search).unwrap_err().to_string()
        };
        let home = err("variables: {a: {secret: {env: HOME}}}\n");
        assert!(
            home.contains("only environment variables named OSFORGE_SECRET_*"),
            "{home}"
        );
        assert!(home.contains("variables.a.secret.env"), "{home}");
        let outside = err("variables: {a: {secret: {file: ../../etc/shadow}}}\n");
        assert!(
            outside.contains("outside the profile's folder"),
            "{outside}"
        );
        std::fs::write(dir.path().join("short"), "abc").unwrap();
        let short = err("variables: {a: {secret: {file: short}}}\n");
        assert!(short.contains("at least 8"), "{short}");
        let unset = err("variables: {a: {secret: {env: OSFORGE_SECRET_UNSET_X}}}\n");
        assert!(
            unset.contains("OSFORGE_SECRET_UNSET_X is not set"),
            "{unset}"
        );
        let kind = err("variables: {a: {secret: {vault: x}}}\n");
        assert!(kind.contains("unknown secret source 'vault'"), "{kind}");
    }
}
