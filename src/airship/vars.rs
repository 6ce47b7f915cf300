//! Reading one Airship vars file: typed access to its YAML tree that turns a
//! wrong shape into an [`ImportError`] naming the file, line and key, and
//! records every key that is not taken as an [`Unmapped`] entry.
//!
//! Airship's vars are Ansible variables, so two Ansible habits are honoured
//! here: booleans written the YAML 1.1 way (`yes`, `no`, `on`) and Jinja
//! references to the file's own scalars (`kubelet={{ k8s_version }}`), which
//! are substituted. Any other Jinja expression cannot be evaluated without
//! Ansible; the value that holds it is reported, not guessed at.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::Unmapped;
use super::error::ImportError;
use crate::profile::{Entry, KeyPath, Node, Value};

/// Variables Airship's roles define for every file (`run_contexts` use them).
const BUILTIN_VARS: [(&str, &str); 2] = [
    ("default_run_context", "common"),
    ("qcow_run_context", "qcow"),
];

pub(crate) struct VarsFile {
    /// The file as messages name it: relative to the manifests directory.
    pub rel: String,
    pub root: Node,
    /// The file's top-level scalars, for `{{ name }}` references.
    vars: BTreeMap<String, String>,
    used_vars: RefCell<BTreeSet<String>>,
    unmapped: RefCell<Vec<Unmapped>>,
    /// Top-level keys no mapping took, with the reason: reported at the end
    /// unless a `{{ name }}` reference used them meanwhile.
    unknown: RefCell<Vec<(KeyPath, String)>>,
}

impl VarsFile {
    /// Parses `text`; errors name `display_path` (the path as the user gave it).
    pub fn parse(
        text: &str,
        display_path: &std::path::Path,
        rel: String,
    ) -> Result<Self, ImportError> {
        let root = Node::parse(text, display_path)?;
        if !matches!(root.value, Value::Map(_)) {
            return Err(invalid(
                &root,
                format!("expected a map of variables, got {}", root.kind()),
            ));
        }
        let mut vars: BTreeMap<String, String> = BUILTIN_VARS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Value::Map(entries) = &root.value {
            for e in entries {
                if let Some(text) = scalar_text(&e.value) {
                    vars.insert(e.key.clone(), text);
                }
            }
        }
        Ok(VarsFile {
            rel,
            root,
            vars,
            used_vars: RefCell::new(BTreeSet::new()),
            unmapped: RefCell::new(Vec::new()),
            unknown: RefCell::new(Vec::new()),
        })
    }

    pub fn entries(&self) -> &[Entry] {
        match &self.root.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// A top-level key no mapping takes: reported by [`Self::take_unmapped`]
    /// unless another value refers to it (`{{ k8s_version }}`), wherever that is.
    pub fn defer_unknown(&self, node: &Node, reason: &str) {
        self.unknown
            .borrow_mut()
            .push((node.origin.path.clone(), reason.to_string()));
    }

    /// `file: key.path` for the comment beside a mapped value.
    pub fn from(&self, node: &Node) -> String {
        let path = node.origin.path.to_string();
        if path.is_empty() {
            self.rel.clone()
        } else {
            format!("{}: {path}", self.rel)
        }
    }

    pub fn unmapped(&self, node: &Node, reason: impl Into<String>) {
        self.unmapped_at(&node.origin.path, reason);
    }

    pub fn unmapped_at(&self, key: &KeyPath, reason: impl Into<String>) {
        self.unmapped.borrow_mut().push(Unmapped {
            file: self.rel.clone(),
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    pub fn take_unmapped(&self) -> Vec<Unmapped> {
        let used = self.used_vars.borrow();
        for (key, reason) in self.unknown.borrow_mut().drain(..) {
            if !used.contains(&key.to_string()) {
                self.unmapped_at(&key, reason);
            }
        }
        std::mem::take(&mut self.unmapped.borrow_mut())
    }

    /// The node as a list; `null` is an empty list, as Ansible loops take it.
    pub fn list<'n>(&self, node: &'n Node) -> Result<&'n [Node], ImportError> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(invalid(
                node,
                format!("expected a list, got {}", node.kind()),
            )),
        }
    }

    /// The node as a map whose keys are all in `known`; the others are
    /// reported as not mapped with `reason`.
    pub fn fields<'n>(
        &self,
        node: &'n Node,
        known: &[&str],
        reason: &str,
    ) -> Result<Fields<'n>, ImportError> {
        let entries: &[Entry] = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => &[],
            _ => {
                return Err(invalid(
                    node,
                    format!("expected a map, got {}", node.kind()),
                ));
            }
        };
        for e in entries {
            if !known.contains(&e.key.as_str()) {
                self.unmapped(&e.value, reason);
            }
        }
        Ok(Fields { node, entries })
    }

    /// A scalar as text, Jinja references substituted. `Ok(None)` when the
    /// value holds an expression osforge cannot evaluate (reported).
    pub fn text(&self, node: &Node) -> Result<Option<String>, ImportError> {
        let Some(raw) = scalar_text(node) else {
            return Err(invalid(
                node,
                format!("expected a single value, got {}", node.kind()),
            ));
        };
        match self.expand(&raw) {
            Ok(text) => Ok(Some(text)),
            Err(expr) => {
                self.unmapped(
                    node,
                    format!("the Jinja expression '{expr}' needs Ansible to evaluate"),
                );
                Ok(None)
            }
        }
    }

    /// A scalar that must be there and be plain text (a name, a path).
    pub fn required_text(
        &self,
        fields: &Fields,
        keys: &[&str],
    ) -> Result<Option<String>, ImportError> {
        match fields.get_any(keys) {
            Some(node) => self.text(node),
            None => Err(invalid(
                fields.node,
                format!("missing key {}", keys.join(" or ")),
            )),
        }
    }

    /// An Ansible boolean: `true`, `yes`, `on`, `1` (and their opposites).
    pub fn bool(&self, node: &Node) -> Result<bool, ImportError> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            Value::Null => Ok(false),
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "y" | "1" => Ok(true),
                "false" | "no" | "off" | "n" | "0" | "" => Ok(false),
                _ => Err(invalid(
                    node,
                    format!("'{s}' is not a boolean (true/false, yes/no)"),
                )),
            },
            _ => Err(invalid(
                node,
                format!("expected a boolean, got {}", node.kind()),
            )),
        }
    }

    /// Substitutes `{{ name }}` where `name` is one of the file's scalars;
    /// any other expression is returned as the error.
    fn expand(&self, text: &str) -> Result<String, String> {
        if text.contains("{%") {
            let end = text.find("%}").map_or(text.len(), |i| i + 2);
            let start = text.find("{%").unwrap_or(0);
            return Err(text[start..end.max(start)].to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else {
                return Err(rest[start..].to_string());
            };
            let expr = &rest[start..start + len + 2];
            let name = expr[2..expr.len() - 2].trim();
            match self.vars.get(name) {
                // One level only: a variable that itself holds Jinja is Ansible's to resolve.
                Some(value) if !value.contains("{{") => {
                    self.used_vars.borrow_mut().insert(name.to_string());
                    out.push_str(&rest[..start]);
                    out.push_str(value);
                }
                _ => return Err(expr.to_string()),
            }
            rest = &rest[start + len + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A map's entries, looked up by key.
pub(crate) struct Fields<'n> {
    pub node: &'n Node,
    entries: &'n [Entry],
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// The first of several spellings (`name` or `path`, `permissions` or `mode`).
    pub fn get_any(&self, keys: &[&str]) -> Option<&'n Node> {
        keys.iter().find_map(|k| self.get(k))
    }
}

pub(crate) fn invalid(node: &Node, message: impl Into<String>) -> ImportError {
    ImportError::InvalidValue {
        at: node.origin.location(),
        key: node.origin.path.clone(),
        message: message.into(),
    }
}

/// Text for any scalar; numbers and booleans as YAML wrote them.
pub(crate) fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Seq(_) | Value::Map(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(text: &str) -> VarsFile {
        VarsFile::parse(text, Path::new("m/x.yaml"), "x.yaml".into()).unwrap()
    }

    #[test]
    fn jinja_references_to_the_files_own_scalars_are_substituted() {
        let f =
            file("k8s_version: 1.21.2-00\npkgs: ['kubelet={{ k8s_version }}', '{{ other }}']\n");
        let items = f.list(f.root.get("pkgs").unwrap()).unwrap();
        assert_eq!(
            f.text(&items[0]).unwrap().as_deref(),
            Some("kubelet=1.21.2-00")
        );
        f.defer_unknown(f.root.get("k8s_version").unwrap(), "unused");
        assert_eq!(f.text(&items[1]).unwrap(), None);
        let unmapped = f.take_unmapped();
        assert_eq!(unmapped.len(), 1);
        assert_eq!(unmapped[0].key, "pkgs[1]");
        assert!(unmapped[0].reason.contains("{{ other }}"));
    }

    #[test]
    fn ansible_booleans_are_read_the_yaml_1_1_way() {
        let f = file("a: yes\nb: 'no'\nc: true\nd: 0\ne: maybe\n");
        let get = |k| f.bool(f.root.get(k).unwrap());
        assert!(get("a").unwrap());
        assert!(!get("b").unwrap());
        assert!(get("c").unwrap());
        assert!(!get("d").unwrap());
        let e = get("e").unwrap_err().to_string();
        assert!(
            e.starts_with("m/x.yaml:5: e: 'maybe' is not a boolean"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_shape_names_the_file_line_and_key() {
        let f = file("partitions:\n  mount: /\n");
        let e = f.list(f.root.get("partitions").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m/x.yaml:2: partitions: expected a list, got a map"
        );
    }
}
