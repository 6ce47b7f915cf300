//! Finding profile files, following `inherits`, checking each file alone, merging.
//!
//! Order of work, each step failing with the file and line at fault:
//!
//! 1. resolve the requested name or path;
//! 2. read the file, parse it, check it alone against the schema (every key
//!    optional) — so a typo is reported in the file that has it;
//! 3. follow `inherits` depth first; the merge order is a post-order walk that
//!    visits each file once (a diamond's shared base is merged once, first), and a
//!    file met again while still on the walk's stack is a cycle;
//! 4. merge the trees in that order (see `merge`), then apply `--var` values;
//! 5. hand the merged tree to `freeze` for the checks that need the whole.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use super::de::from_node;
use super::error::{KeyPath, ProfileError, SourceLocation};
use super::merge::merge;
use super::node::{Entry, Node, Value, parse_cli_value};
use super::schema::ProfileDoc;

/// Where profiles and templates are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    /// Searched in order for `NAME.yaml`; the first match wins.
    pub profile_dirs: Vec<PathBuf>,
    /// Searched in order for template names.
    pub template_dirs: Vec<PathBuf>,
    /// Searched in order for playbook and inventory names (`ansible:`).
    pub playbook_dirs: Vec<PathBuf>,
    /// Whether files a profile names (`source:`, `key_file`) may lie outside
    /// the folder of the profile that names them.
    pub allow_files_outside: bool,
}

impl SearchPath {
    /// A colon-separated list of profile directories searched before `./profiles`.
    pub const PROFILE_PATH_ENV: &'static str = "OSFORGE_PROFILE_PATH";
    /// A colon-separated list of template directories searched before the
    /// `templates/` directory beside each profile directory.
    pub const TEMPLATE_PATH_ENV: &'static str = "OSFORGE_TEMPLATE_PATH";
    /// A colon-separated list of directories searched for playbook and
    /// inventory names before the `playbooks/` directory beside each profile
    /// directory.
    pub const PLAYBOOK_PATH_ENV: &'static str = "OSFORGE_PLAYBOOK_PATH";
    /// `1`: profiles may name files outside their own folder.
    pub const ALLOW_OUTSIDE_ENV: &'static str = "OSFORGE_ALLOW_FILES_OUTSIDE";

    /// `$OSFORGE_PROFILE_PATH` then `./profiles`; `$OSFORGE_TEMPLATE_PATH` then the
    /// `templates/` beside each profile directory (so `./templates` by default).
    pub fn from_env() -> Self {
        let split = |var: &str| -> Vec<PathBuf> {
            std::env::var_os(var)
                .map(|v| {
                    std::env::split_paths(&v)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut profile_dirs = split(Self::PROFILE_PATH_ENV);
        profile_dirs.push(PathBuf::from("profiles"));
        let mut search = SearchPath::new(profile_dirs, split(Self::TEMPLATE_PATH_ENV));
        search
            .playbook_dirs
            .splice(0..0, split(Self::PLAYBOOK_PATH_ENV));
        search.allow_files_outside =
            std::env::var_os(Self::ALLOW_OUTSIDE_ENV).is_some_and(|v| v == "1");
        search
    }

    /// Profile directories as given; template directories as given, then the
    /// `templates/` beside each profile directory; the `playbooks/` beside
    /// each profile directory.
    pub fn new(profile_dirs: Vec<PathBuf>, template_dirs: Vec<PathBuf>) -> Self {
        let mut search = SearchPath {
            profile_dirs: Vec::new(),
            template_dirs,
            playbook_dirs: Vec::new(),
            allow_files_outside: false,
        };
        for dir in profile_dirs {
            search.add_profile_dir(dir, false);
        }
        search
    }

    /// Adds a profile directory (and its sibling `templates/` and
    /// `playbooks/`), first or last.
    pub(crate) fn add_profile_dir(&mut self, dir: PathBuf, first: bool) {
        let add = |dirs: &mut Vec<PathBuf>, dir: PathBuf| {
            if !dirs.contains(&dir) {
                if first {
                    dirs.insert(0, dir);
                } else {
                    dirs.push(dir);
                }
            }
        };
        add(&mut self.template_dirs, sibling(&dir, "templates"));
        add(&mut self.playbook_dirs, sibling(&dir, "playbooks"));
        add(&mut self.profile_dirs, dir);
    }

    pub(crate) fn describe_profile_dirs(&self) -> String {
        describe_dirs(&self.profile_dirs)
    }
}

/// `templates/` or `playbooks/` beside a profile directory.
fn sibling(profile_dir: &Path, name: &str) -> PathBuf {
    match profile_dir.parent() {
        Some(parent) => parent.join(name),
        None => PathBuf::from(name),
    }
}

pub(crate) fn describe_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| format!("{}/", d.display().to_string().trim_end_matches('/')))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `NAME` or a path? Paths have a slash or a YAML extension.
fn is_path(reference: &str) -> bool {
    reference.contains('/') || reference.ends_with(".yaml") || reference.ends_with(".yml")
}

/// A profile's name: its file name without the extension.
pub(crate) fn profile_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `a/./b/../c` → `a/c`, without touching the file system, so messages show the
/// paths users would write.
pub(crate) fn tidy(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                let can_pop = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if can_pop {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

fn find_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .flat_map(|d| {
            [
                d.join(format!("{name}.yaml")),
                d.join(format!("{name}.yml")),
            ]
        })
        .find(|p| p.is_file())
        .map(|p| tidy(&p))
}

/// One profile file, read and checked alone.
pub(crate) struct ProfileFile {
    pub path: PathBuf,
    pub tree: Node,
    pub doc: ProfileDoc,
}

impl ProfileFile {
    pub fn read(path: &Path) -> Result<ProfileFile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::reading(path, e))?;
        let tree = Node::parse(&text, path)?;
        if !matches!(tree.value, Value::Map(_)) {
            return Err(tree
                .origin
                .error(format!("a profile is a map of keys, not {}", tree.kind())));
        }
        // Templated OS values are checked once rendered, after the merge.
        let doc: ProfileDoc = match super::expand::without_templated_os_values(&tree) {
            Some(untemplated) => from_node(&untemplated)?,
            None => from_node(&tree)?,
        };
        Ok(ProfileFile {
            path: path.to_path_buf(),
            tree,
            doc,
        })
    }
}

/// Finds the profile a user asked for: a path, or a name in the search path.
pub(crate) fn resolve(reference: &str, search: &SearchPath) -> Result<PathBuf, ProfileError> {
    if is_path(reference) {
        let path = PathBuf::from(reference);
        if !path.is_file() {
            let e = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(ProfileError::reading(&path, e));
        }
        return Ok(path);
    }
    find_in(&search.profile_dirs, reference).ok_or_else(|| ProfileError::ProfileNotFound {
        name: reference.to_string(),
        searched: search.describe_profile_dirs(),
    })
}

/// The files of a profile in merge order: parents before children, each once.
pub(crate) fn linearize(
    leaf: &Path,
    search: &SearchPath,
) -> Result<Vec<ProfileFile>, ProfileError> {
    let mut walk = Walk {
        search,
        order: Vec::new(),
        done: HashSet::new(),
        stack: Vec::new(),
    };
    walk.visit(leaf)?;
    Ok(walk.order)
}

struct Walk<'a> {
    search: &'a SearchPath,
    order: Vec<ProfileFile>,
    done: HashSet<PathBuf>,
    /// (canonical path, name) of the files being visited, outermost first.
    stack: Vec<(PathBuf, String)>,
}

impl Walk<'_> {
    fn visit(&mut self, path: &Path) -> Result<(), ProfileError> {
        let canonical = path
            .canonicalize()
            .map_err(|e| ProfileError::reading(path, e))?;
        if self.done.contains(&canonical) {
            return Ok(());
        }
        let file = ProfileFile::read(path)?;
        self.stack.push((canonical.clone(), profile_name(path)));
        for (i, parent) in file.doc.inherits.0.iter().enumerate() {
            let (at, _) = file.tree.lookup(&KeyPath::root().key("inherits").index(i));
            let parent_path = self
                .find_parent(parent, &file.path)
                .map_err(|e| at.origin.error(e))?;
            let parent_canonical = parent_path
                .canonicalize()
                .map_err(|e| ProfileError::reading(&parent_path, e))?;
            if let Some(start) = self.stack.iter().position(|(c, _)| *c == parent_canonical) {
                let mut names: Vec<&str> = self.stack[start..]
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .collect();
                names.push(&self.stack[start].1);
                return Err(at.origin.error(format!("cycle {}", names.join(" -> "))));
            }
            self.visit(&parent_path)?;
        }
        self.stack.pop();
        self.done.insert(canonical);
        self.order.push(file);
        Ok(())
    }

    /// A parent by relative path (from the child's directory) or by name (the
    /// child's directory first, then the search path).
    fn find_parent(&self, parent: &str, child: &Path) -> Result<PathBuf, String> {
        let child_dir = child.parent().unwrap_or(Path::new("")).to_path_buf();
        if parent.is_empty() {
            return Err("an empty parent name".into());
        }
        if is_path(parent) {
            let path = tidy(&child_dir.join(parent));
            return if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "parent '{parent}' not found (no file {})",
                    path.display()
                ))
            };
        }
        let own = if child_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            child_dir
        };
        let mut dirs = vec![own.clone()];
        dirs.extend(
            self.search
                .profile_dirs
                .iter()
                .filter(|d| tidy(d) != tidy(&own))
                .cloned(),
        );
        find_in(&dirs, parent).ok_or_else(|| {
            format!(
                "parent '{parent}' not found (searched {})",
                describe_dirs(&dirs)
            )
        })
    }
}

/// Merges the files in order. `description` and `inherits` belong to each file
/// and are not merged.
pub(crate) fn merge_files(files: &[ProfileFile]) -> Node {
    let mut merged: Option<Node> = None;
    for file in files {
        let mut tree = file.tree.clone();
        if let Value::Map(entries) = &mut tree.value {
            entries.retain(|e| e.key != "description" && e.key != "inherits");
        }
        merged = Some(match merged {
            None => tree,
            Some(parent) => merge(parent, tree),
        });
    }
    merged.expect("a profile has at least its own file")
}

/// Variables `--var` may set even when no profile declares them.
pub(crate) const BUILTIN_VARIABLES: [&str; 2] = ["instance_id", "uuid"];

/// Applies `--var KEY=VALUE` overrides. A key must be declared by the profile (a
/// typo would otherwise be silently ignored) or be one of [`BUILTIN_VARIABLES`].
pub(crate) fn apply_vars(
    tree: &mut Node,
    vars: &[(String, String)],
    profile: &str,
) -> Result<(), ProfileError> {
    let Value::Map(root) = &mut tree.value else {
        unreachable!("profiles are maps; checked when read")
    };
    if !root.iter().any(|e| e.key == "variables") {
        let origin = tree.origin.clone();
        root.push(Entry {
            key: "variables".into(),
            key_origin: origin.clone(),
            value: Node {
                value: Value::Map(Vec::new()),
                tag: None,
                origin,
            },
        });
    }
    let variables = root
        .iter_mut()
        .find(|e| e.key == "variables")
        .map(|e| &mut e.value)
        .expect("inserted above");
    if matches!(variables.value, Value::Null) {
        variables.value = Value::Map(Vec::new());
    }
    let Value::Map(entries) = &mut variables.value else {
        return Err(variables
            .origin
            .error(format!("expected a map, got {}", variables.kind())));
    };
    for (key, text) in vars {
        let flag = format!("--var {key}");
        let declared = entries.iter().any(|e| &e.key == key);
        if !declared && !BUILTIN_VARIABLES.contains(&key.as_str()) {
            return Err(ProfileError::InvalidArgument {
                flag,
                message: no_such_variable(profile, key, entries.iter().map(|e| e.key.as_str())),
            });
        }
        let value = parse_var_value(text).map_err(|message| ProfileError::InvalidArgument {
            flag: flag.clone(),
            message,
        })?;
        let node = Node::synthetic(value, &flag);
        match entries.iter_mut().find(|e| &e.key == key) {
            Some(entry) => entry.value = node,
            None => entries.push(Entry {
                key: key.clone(),
                key_origin: node.origin.clone(),
                value: node,
            }),
        }
    }
    Ok(())
}

/// "profile 'web' has no variable 'x' (it has a, b, ...)": what `--var` and
/// a hosts file say about a variable the profile does not declare.
pub(crate) fn no_such_variable<'a>(
    profile: &str,
    key: &str,
    declared: impl Iterator<Item = &'a str>,
) -> String {
    let mut known: Vec<&str> = declared.collect();
    known.extend(BUILTIN_VARIABLES);
    known.sort_unstable();
    known.dedup();
    format!(
        "profile '{profile}' has no variable '{key}' (it has {})",
        known.join(", ")
    )
}

/// `4` → integer, `true` → boolean, `[a, b]` → list, `"4"` → the string 4, an
/// empty value → null; anything else is the text as typed.
pub(crate) fn parse_var_value(text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        return parse_cli_value(text)
            .map_err(|e| format!("'{text}' is not a YAML list or map: {e}"));
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    Ok(match parse_cli_value(text) {
        Ok(
            value @ (Value::Bool(_)
            | Value::Int(_)
            | Value::UInt(_)
            | Value::Float(_)
            | Value::Str(_)),
        ) => value,
        Ok(Value::Null) if matches!(text.trim(), "null" | "~") => Value::Null,
        _ => Value::Str(text.to_string()),
    })
}

/// Splits a command-line `KEY=VALUE`.
pub fn parse_var_arg(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("'{arg}' is not KEY=VALUE")),
    }
}

/// The location of the node at `path` in the merged tree, for errors found after
/// merging; a path that does not exist is reported at the leaf profile.
pub(crate) fn locate(tree: &Node, path: &KeyPath, leaf: &Path) -> (SourceLocation, KeyPath) {
    match tree.lookup(path) {
        (node, true) => (node.origin.location(), node.origin.path.clone()),
        _ => (SourceLocation::file_only(leaf), path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_values_are_yaml_scalars_or_flow_collections() {
        assert_eq!(parse_var_value("4"), Ok(Value::Int(4)));
        assert_eq!(parse_var_value("true"), Ok(Value::Bool(true)));
        assert_eq!(parse_var_value("yes"), Ok(Value::Str("yes".into())));
        assert_eq!(parse_var_value("\"4\""), Ok(Value::Str("4".into())));
        assert_eq!(parse_var_value(""), Ok(Value::Null));
        assert_eq!(parse_var_value("null"), Ok(Value::Null));
        assert_eq!(parse_var_value("#marker"), Ok(Value::Str("#marker".into())));
        assert_eq!(parse_var_value("a: b"), Ok(Value::Str("a: b".into())));
        assert_eq!(
            parse_var_value("ssh-ed25519 AAAA x@y"),
            Ok(Value::Str("ssh-ed25519 AAAA x@y".into()))
        );
        let Ok(Value::Seq(items)) = parse_var_value("[a, 2]") else {
            panic!("a flow list is a list")
        };
        assert_eq!(items.len(), 2);
        assert!(parse_var_value("[a, ").is_err());
    }

    #[test]
    fn var_arguments_split_at_the_first_equals_sign() {
        assert_eq!(parse_var_arg("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_var_arg("a="), Ok(("a".into(), String::new())));
        assert!(parse_var_arg("=b").is_err());
        assert!(parse_var_arg("ab").is_err());
    }

    #[test]
    fn paths_are_tidied_lexically() {
        assert_eq!(
            tidy(Path::new("profiles/./x/../base.yaml")),
            PathBuf::from("profiles/base.yaml")
        );
        assert_eq!(tidy(Path::new("../a/../b")), PathBuf::from("../b"));
        assert_eq!(tidy(Path::new("./")), PathBuf::from("."));
    }

    #[test]
    fn templates_are_looked_up_beside_each_profile_directory() {
        let s = SearchPath::new(vec!["/srv/site/profiles".into(), "profiles".into()], vec![]);
        assert_eq!(
            s.template_dirs,
            vec![
                PathBuf::from("/srv/site/templates"),
                PathBuf::from("templates")
            ]
        );
    }
}
