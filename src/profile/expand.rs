//! Profile variables in the OS configuration.
//!
//! Every string value under the OS keys ([`OS_KEYS`]: sysctl, files,
//! directories, limits, users, systemd, ...) is a tera template rendered with
//! the profile's variables after `--var`, on the merged tree and before the
//! typed checks, so a rendered value is checked like a written one and an
//! error names the file, line and key that holds the template. Literal braces
//! stay possible with `{% raw %}...{% endraw %}`.
//!
//! Rendered values feed the configure stage's cache key (they are the values
//! it applies). A variable that a host sets with `--var` and that an OS value
//! uses therefore makes that stage per host; [`OsTemplate`] records which
//! variables each value uses so the build can say so. The cloud-init seed and
//! the kernel command line are rendered per host elsewhere (`render`) and stay
//! out of the stage keys.

use super::error::{KeyPath, ProfileError};
use super::node::{Node, Value};
use super::render::{mentions_variable, render_source};

/// The top-level keys whose string values are templates.
pub(crate) const OS_KEYS: &[&str] = &[
    "hostname",
    "locale",
    "timezone",
    "users",
    "sysctl",
    "kernel_modules",
    "limits",
    "files",
    "directories",
    "systemd",
    // The `auth` of a private registry, from a `secret:` variable.
    "images",
];

/// Keys whose values are numbers or booleans: `uid: "{{ ops_uid }}"` takes the
/// rendered number, `sudo: "{{ admin }}"` the rendered boolean.
const TYPED_KEYS: &[&str] = &["uid", "sudo", "value"];

/// One templated value of the OS configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OsTemplate {
    /// Where it sits in the merged profile (`sysctl.vm.swappiness`).
    pub key_path: String,
    /// The profile variables it uses.
    pub variables: Vec<String>,
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// `tree` without the OS keys that hold a template anywhere, for checking
/// one file alone: `uid: "{{ id }}"` or `hostname: "{{ name }}"` can only be
/// checked once rendered, which happens on the merged tree (whose check
/// names the same file, line and key). None when nothing is templated.
pub(crate) fn without_templated_os_values(tree: &Node) -> Option<Node> {
    fn templated(node: &Node) -> bool {
        match &node.value {
            Value::Str(text) => is_template(text),
            Value::Seq(items) => items.iter().any(templated),
            Value::Map(entries) => entries.iter().any(|e| templated(&e.value)),
            _ => false,
        }
    }
    let Value::Map(entries) = &tree.value else {
        return None;
    };
    let skip = |e: &super::node::Entry| OS_KEYS.contains(&e.key.as_str()) && templated(&e.value);
    if !entries.iter().any(skip) {
        return None;
    }
    let mut copy = tree.clone();
    if let Value::Map(entries) = &mut copy.value {
        entries.retain(|e| !skip(e));
    }
    Some(copy)
}

/// Renders the OS values of `tree` in place; returns what was templated.
pub(crate) fn render_os_values(
    tree: &mut Node,
    profile_name: &str,
) -> Result<Vec<OsTemplate>, ProfileError> {
    let variables = match tree.get("variables").map(Node::to_json) {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let mut context = tera::Context::new();
    for (name, value) in &variables {
        context.insert(name.as_str(), value);
    }
    context.insert("profile", profile_name);
    let names: Vec<&str> = variables.keys().map(String::as_str).collect();

    let mut found = Vec::new();
    if let Value::Map(entries) = &mut tree.value {
        for entry in entries
            .iter_mut()
            .filter(|e| OS_KEYS.contains(&e.key.as_str()))
        {
            let path = KeyPath::root().key(entry.key.as_str());
            let walk = Walk {
                context: &context,
                names: &names,
            };
            walk.node(&mut entry.value, &path, &entry.key, &mut found)?;
        }
    }
    Ok(found)
}

struct Walk<'a> {
    context: &'a tera::Context,
    names: &'a [&'a str],
}

impl Walk<'_> {
    fn node(
        &self,
        node: &mut Node,
        path: &KeyPath,
        key: &str,
        found: &mut Vec<OsTemplate>,
    ) -> Result<(), ProfileError> {
        match &mut node.value {
            Value::Str(text) if is_template(text) => {
                let source = text.clone();
                let rendered = render_source(&path.to_string(), &source, self.context)
                    .map_err(|(_, message)| node.origin.error(message))?;
                found.push(OsTemplate {
                    key_path: path.to_string(),
                    variables: self
                        .names
                        .iter()
                        .filter(|name| mentions_variable(&source, name))
                        .map(|name| name.to_string())
                        .collect(),
                });
                node.value = typed(key, &source, rendered);
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.node(item, &path.index(i), key, found)?;
                }
            }
            Value::Map(entries) => {
                for entry in entries.iter_mut() {
                    let child = path.key(entry.key.as_str());
                    self.node(&mut entry.value, &child, &entry.key, found)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A number or boolean for [`TYPED_KEYS`] when the whole value was one
/// expression (`"{{ uid }}"`); text everywhere else (`"listen {{ port }};"`,
/// a file mode `"0{{ mode }}"` keeps its leading zero).
fn typed(key: &str, source: &str, rendered: String) -> Value {
    let trimmed = source.trim();
    let whole_expression =
        trimmed.starts_with("{{") && trimmed.ends_with("}}") && trimmed.matches("{{").count() == 1;
    if whole_expression && TYPED_KEYS.contains(&key) {
        match rendered.trim() {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            number if !number.starts_with('0') || number == "0" => {
                if let Ok(n) = number.parse::<i64>() {
                    return Value::Int(n);
                }
            }
            _ => {}
        }
    }
    Value::Str(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tree(text: &str) -> Node {
        Node::parse(text, Path::new("p.yaml")).unwrap()
    }

    #[test]
    fn os_values_render_and_everything_else_is_left_alone() {
        let mut t = tree(
            "variables: {swappiness: 10, port: 8080}\n\
             sysctl: {vm.swappiness: \"{{ swappiness }}\"}\n\
             files: [{path: /etc/x, content: \"listen {{ port }};\"}]\n\
             kernel: {cmdline: [\"a={{ port }}\"]}\n",
        );
        let found = render_os_values(&mut t, "web").unwrap();
        let json = t.to_json();
        assert_eq!(json["sysctl"]["vm.swappiness"], "10");
        assert_eq!(json["files"][0]["content"], "listen 8080;");
        assert_eq!(json["kernel"]["cmdline"][0], "a={{ port }}");
        assert_eq!(
            found,
            vec![
                OsTemplate {
                    key_path: "sysctl.vm.swappiness".into(),
                    variables: vec!["swappiness".into()],
                },
                OsTemplate {
                    key_path: "files[0].content".into(),
                    variables: vec!["port".into()],
                },
            ]
        );
    }

    #[test]
    fn raw_blocks_keep_literal_braces() {
        let mut t =
            tree("files: [{path: /x, content: \"{% raw %}{{ not_a_var }}{% endraw %}\"}]\n");
        render_os_values(&mut t, "p").unwrap();
        assert_eq!(t.to_json()["files"][0]["content"], "{{ not_a_var }}");
    }

    #[test]
    fn an_undefined_variable_names_the_file_line_and_key() {
        let mut t = tree("variables: {}\nfiles:\n  - path: /x\n    content: \"{{ web_port }}\"\n");
        let err = render_os_values(&mut t, "p").unwrap_err().to_string();
        assert!(err.contains("p.yaml:4"), "{err}");
        assert!(err.contains("files[0].content"), "{err}");
        assert!(err.contains("undefined variable 'web_port'"), "{err}");
    }

    #[test]
    fn whole_expressions_give_numbers_and_booleans_where_those_belong() {
        let mut t = tree(
            "variables: {id: 1500, admin: true, mode: \"644\"}\n\
             users: [{name: ops, uid: \"{{ id }}\", sudo: \"{{ admin }}\"}]\n\
             files: [{path: /x, content: \"{{ id }}\", mode: \"0{{ mode }}\"}]\n",
        );
        render_os_values(&mut t, "p").unwrap();
        let json = t.to_json();
        assert_eq!(json["users"][0]["uid"], 1500);
        assert_eq!(json["users"][0]["sudo"], true);
        assert_eq!(json["files"][0]["content"], "1500");
        assert_eq!(json["files"][0]["mode"], "0644");
    }
}
