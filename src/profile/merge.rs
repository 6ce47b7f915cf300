//! How a child profile lands on its parents.
//!
//! The rules are few so that a reader can predict the result without running it:
//!
//! * **maps** merge key by key, recursively; keys keep the parent's order and new
//!   keys follow in the child's order;
//! * **lists** append: the parent's items, then the child's, leaving out a child's
//!   scalar item that is already there (`packages: [sudo]` twice installs it once);
//! * **anything else** — scalars, `null`, or a value of another kind — replaces;
//! * a value tagged **`!replace`** replaces whatever the parent had, list or map
//!   (`packages: !replace [a, b]`, `disk: !replace {...}`).
//!
//! A key written with no value is `null` and so resets the parent's value: this is
//! how a child drops a parent's `disk:` or `mirror:`.

use super::node::{Node, Value};

/// Merges `child` onto `parent`; every node keeps the origin of the file that wrote it.
pub(crate) fn merge(parent: Node, child: Node) -> Node {
    if child.is_replace() {
        return child;
    }
    match (parent.value, child.value) {
        (Value::Map(mut entries), Value::Map(child_entries)) => {
            for child_entry in child_entries {
                match entries.iter().position(|e| e.key == child_entry.key) {
                    Some(i) => {
                        let parent_entry = entries.remove(i);
                        let mut merged = child_entry;
                        merged.value = merge(parent_entry.value, merged.value);
                        entries.insert(i, merged);
                    }
                    None => entries.push(child_entry),
                }
            }
            Node {
                value: Value::Map(entries),
                tag: child.tag,
                origin: child.origin,
            }
        }
        (Value::Seq(mut items), Value::Seq(child_items)) => {
            for item in child_items {
                let duplicate = item.is_scalar()
                    && items
                        .iter()
                        .any(|have| have.is_scalar() && have.value == item.value);
                if !duplicate {
                    items.push(item);
                }
            }
            Node {
                value: Value::Seq(items),
                tag: child.tag,
                origin: child.origin,
            }
        }
        (_, value) => Node {
            value,
            tag: child.tag,
            origin: child.origin,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn merged(parent: &str, child: &str) -> serde_json::Value {
        let p = Node::parse(parent, Path::new("parent.yaml")).unwrap();
        let c = Node::parse(child, Path::new("child.yaml")).unwrap();
        merge(p, c).to_json()
    }

    #[test]
    fn maps_merge_deeply_and_the_child_wins_on_scalars() {
        assert_eq!(
            merged(
                "distro: {name: debian, suite: bookworm}\nhostname: a\n",
                "distro: {suite: trixie, arch: arm64}\n"
            ),
            serde_json::json!({
                "distro": {"name": "debian", "suite": "trixie", "arch": "arm64"},
                "hostname": "a"
            })
        );
    }

    #[test]
    fn lists_append_without_repeating_scalar_items() {
        assert_eq!(
            merged("packages: [a, b]\n", "packages: [b, c]\n"),
            serde_json::json!({"packages": ["a", "b", "c"]})
        );
        assert_eq!(
            merged("users: [{name: a}]\n", "users: [{name: a}]\n"),
            serde_json::json!({"users": [{"name": "a"}, {"name": "a"}]}),
            "maps in lists are items, not duplicates to drop"
        );
    }

    #[test]
    fn the_replace_tag_discards_the_parents_value() {
        assert_eq!(
            merged("packages: [a, b]\n", "packages: !replace [c]\n"),
            serde_json::json!({"packages": ["c"]})
        );
        assert_eq!(
            merged("sysctl: {a: 1, b: 2}\n", "sysctl: !replace {c: 3}\n"),
            serde_json::json!({"sysctl": {"c": 3}})
        );
    }

    #[test]
    fn null_resets_and_a_different_kind_replaces() {
        assert_eq!(
            merged("disk: {size: 8G}\n", "disk:\n"),
            serde_json::json!({"disk": null})
        );
        assert_eq!(
            merged("variables: {keys: [a]}\n", "variables: {keys: none}\n"),
            serde_json::json!({"variables": {"keys": "none"}})
        );
    }

    #[test]
    fn merged_nodes_keep_the_origin_of_the_file_that_wrote_them() {
        let p = Node::parse("packages: [a]\n", Path::new("parent.yaml")).unwrap();
        let c = Node::parse("\n\npackages: [b]\n", Path::new("child.yaml")).unwrap();
        let m = merge(p, c);
        let Value::Seq(items) = &m.get("packages").unwrap().value else {
            panic!("not a list")
        };
        assert_eq!(&*items[0].origin.file, Path::new("parent.yaml"));
        assert_eq!(&*items[1].origin.file, Path::new("child.yaml"));
        assert_eq!(items[1].origin.line, 3);
    }
}
