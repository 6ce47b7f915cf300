//! `ansible:`: playbooks run against the configured image, each its own
//! cached stage after the native configuration (see `pipeline::ansible`).
//!
//! ```yaml
//! ansible:
//!   playbooks: [osconfig-extras.yml, ./site/compute.yml]   # or one string
//!   inventory: inventory.ini        # a file or a directory; its group_vars apply
//!   groups: [compute, site_a]       # the inventory groups the image host is in
//!   verbosity: 0                    # 0 to 4: ansible-playbook -v ... -vvvv
//!   extra_vars: {motd: "hello"}     # Ansible extra vars (-e): they win over everything
//! ```
//!
//! Names are found as templates are: a value with a `/` is a path relative
//! to the profile file that names it (and must stay inside its folder); a
//! bare name is looked up in `$OSFORGE_PLAYBOOK_PATH`, then in the
//! `playbooks/` folder beside each profile folder (for osforge's own
//! profiles, the repository's `playbooks/`). A bare playbook name may leave
//! out `.yml` or `.yaml`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::error::{KeyPath, ProfileError};
use super::freeze::Freezer;
use super::load::{describe_dirs, tidy};
use super::node::yaml_top_kind;
use super::validate::check_variable_name;

/// The highest `verbosity`: ansible-playbook's `-vvvv`.
const MAX_VERBOSITY: u8 = 4;

/// `ansible:` as one file writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AnsibleDoc {
    pub playbooks: Playbooks,
    pub inventory: Option<String>,
    pub groups: Vec<String>,
    pub verbosity: Option<u8>,
    pub extra_vars: BTreeMap<String, serde_json::Value>,
}

/// One playbook name or a list of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Playbooks {
    pub names: Vec<String>,
    /// Written as a list (errors then name the item: `playbooks[1]`).
    pub listed: bool,
}

impl<'de> Deserialize<'de> for Playbooks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Playbooks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a playbook, or a list of playbooks")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Playbooks, E> {
                Ok(Playbooks {
                    names: vec![v.to_string()],
                    listed: false,
                })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Playbooks, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Playbooks {
                    names,
                    listed: true,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The frozen `ansible:` section, its files found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ansible {
    pub playbooks: Vec<Playbook>,
    /// A file or a directory (ansible-playbook's `-i`).
    pub inventory: Option<PathBuf>,
    pub groups: Vec<String>,
    pub verbosity: u8,
    pub extra_vars: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Playbook {
    /// As the profile wrote it.
    pub name: String,
    pub path: PathBuf,
}

pub(super) fn freeze_ansible(
    doc: Option<AnsibleDoc>,
    fz: &mut Freezer<'_>,
) -> Result<Option<Ansible>, ProfileError> {
    let Some(doc) = doc else {
        return Ok(None);
    };
    let at = KeyPath::parse("ansible");
    if doc.playbooks.names.is_empty() {
        return Err(fz.error(
            &at.key("playbooks"),
            "no playbook to run (give one or a list)",
        ));
    }
    let mut playbooks = Vec::new();
    for (i, name) in doc.playbooks.names.iter().enumerate() {
        let key = if doc.playbooks.listed {
            at.key("playbooks").index(i)
        } else {
            at.key("playbooks")
        };
        let path = find(fz, &key, name, Kind::Playbook)?;
        check_playbook(fz, &key, &path)?;
        fz.note_source(path.clone());
        playbooks.push(Playbook {
            name: name.clone(),
            path,
        });
    }
    let inventory = match &doc.inventory {
        Some(name) => {
            let path = find(fz, &at.key("inventory"), name, Kind::Inventory)?;
            if path.is_file() {
                fz.note_source(path.clone());
            }
            Some(path)
        }
        None => None,
    };
    for (i, group) in doc.groups.iter().enumerate() {
        let key = at.key("groups").index(i);
        check_variable_name(group).map_err(|_| {
            fz.error(
                &key,
                format!("'{group}' is not an Ansible group name (letters, digits and '_', not starting with a digit)"),
            )
        })?;
        if matches!(group.as_str(), "all" | "ungrouped") {
            return Err(fz.error(
                &key,
                format!("'{group}' is Ansible's own group; every host is in it"),
            ));
        }
    }
    let verbosity = doc.verbosity.unwrap_or(0);
    if verbosity > MAX_VERBOSITY {
        return Err(fz.error(
            &at.key("verbosity"),
            format!("{verbosity} is not a verbosity (0 to {MAX_VERBOSITY}, as -v to -vvvv)"),
        ));
    }
    for name in doc.extra_vars.keys() {
        check_variable_name(name)
            .map_err(|m| fz.error(&at.key("extra_vars").key(name.as_str()), m))?;
    }
    Ok(Some(Ansible {
        playbooks,
        inventory,
        groups: doc.groups,
        verbosity,
        extra_vars: doc.extra_vars,
    }))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Playbook,
    Inventory,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Playbook => "playbook",
            Kind::Inventory => "inventory",
        }
    }

    /// A playbook is a file; an inventory may be a directory of them.
    fn accepts(self, path: &std::path::Path) -> bool {
        path.is_file() || (self == Kind::Inventory && path.is_dir())
    }
}

/// A path relative to the profile that names it, or a bare name in the
/// playbook search path.
fn find(fz: &Freezer<'_>, at: &KeyPath, name: &str, kind: Kind) -> Result<PathBuf, ProfileError> {
    if name.contains('/') {
        let path = fz.locate_file(at, name)?;
        if !kind.accepts(&path) {
            return Err(fz.error(
                at,
                format!("{} {} does not exist", kind.noun(), path.display()),
            ));
        }
        return Ok(path);
    }
    let has_extension = name.ends_with(".yml") || name.ends_with(".yaml");
    let candidates = |dir: &PathBuf| -> Vec<PathBuf> {
        let mut names = vec![dir.join(name)];
        if kind == Kind::Playbook && !has_extension {
            names.push(dir.join(format!("{name}.yml")));
            names.push(dir.join(format!("{name}.yaml")));
        }
        names
    };
    let dirs = &fz.search.playbook_dirs;
    dirs.iter()
        .flat_map(candidates)
        .find(|p| kind.accepts(p))
        .map(|p| tidy(&p))
        .ok_or_else(|| {
            fz.error(
                at,
                format!(
                    "{} '{name}' not found (searched {}; a path relative to the profile needs a '/': ./{name})",
                    kind.noun(),
                    describe_dirs(dirs)
                ),
            )
        })
}

/// A playbook is a YAML list of plays; a syntax error is reported now, at
/// its line, rather than after minutes of building.
fn check_playbook(
    fz: &Freezer<'_>,
    at: &KeyPath,
    path: &std::path::Path,
) -> Result<(), ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let reason = ProfileError::reading(path, e);
        fz.error(at, format!("cannot read {reason}"))
    })?;
    match yaml_top_kind(&text) {
        Ok(Some("a list")) => Ok(()),
        Ok(kind) => Err(fz.error(
            at,
            format!(
                "{} is not a playbook: it holds {}, not a list of plays",
                path.display(),
                kind.unwrap_or("nothing")
            ),
        )),
        Err(message) => Err(fz.error(
            at,
            format!("{}: YAML syntax error: {message}", path.display()),
        )),
    }
}
