//! A generic YAML tree that remembers, for every value, the file and line it came
//! from and the key path it had there.
//!
//! Inheritance merges whole documents before their meaning is known, so the merge
//! works on this tree, not on typed structs. Keeping the origin on each node is what
//! lets an error found after merging (a bad password hash in a parent, a cmdline
//! parameter that only breaks once a `--var` is substituted) still name the file and
//! line that holds it, and its key path *in that file*. The YAML tag is kept too,
//! because `!replace` changes how a node merges.
//!
//! Parsing goes through serde-saphyr: `Spanned<Tagged<_>>` gives the line and tag of
//! each node. Its options are set for configuration files: YAML 1.2 booleans only
//! (`yes`, `no`, `on`, `y` stay strings), leading-zero numbers stay strings (a file
//! mode written `0644` is not silently read as 644), duplicate keys are errors.

use std::fmt;
use std::path::Path;
use std::rc::Rc;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, Tagged};

use super::error::{KeyPath, PathSegment, ProfileError, SourceLocation, one_line};

/// Where a node was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Origin {
    pub file: Rc<Path>,
    pub line: u32,
    /// The key path of the node inside its own file.
    pub path: KeyPath,
}

impl Origin {
    pub fn location(&self) -> SourceLocation {
        SourceLocation::new(self.file.to_path_buf(), Some(self.line))
    }

    pub fn error(&self, message: impl Into<String>) -> ProfileError {
        ProfileError::invalid(self.location(), self.path.clone(), message)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_origin: Origin,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub tag: Option<String>,
    pub origin: Origin,
}

/// The one tag osforge gives a meaning to: "do not merge with the parent's value".
pub(crate) const REPLACE_TAG: &str = "!replace";

impl Node {
    /// Parses a YAML document. An empty file is an empty mapping.
    pub fn parse(text: &str, file: &Path) -> Result<Node, ProfileError> {
        let file: Rc<Path> = Rc::from(file);
        let raw = parse_raw(text).map_err(|(line, message)| ProfileError::ParsingYaml {
            at: SourceLocation::new(file.to_path_buf(), line),
            message,
        })?;
        let root = match raw {
            Some(raw) => Node::from_raw(raw, &file, KeyPath::root()),
            None => Node {
                value: Value::Map(Vec::new()),
                tag: None,
                origin: Origin {
                    file: file.clone(),
                    line: 1,
                    path: KeyPath::root(),
                },
            },
        };
        root.check_tags()?;
        Ok(root)
    }

    /// A node made by osforge itself (a `--var` value), attributed to `source`.
    pub fn synthetic(value: Value, source: &str) -> Node {
        Node {
            value,
            tag: None,
            origin: Origin {
                file: Rc::from(Path::new(source)),
                line: 0,
                path: KeyPath::root(),
            },
        }
    }

    fn from_raw(raw: RawNode, file: &Rc<Path>, path: KeyPath) -> Node {
        let origin = Origin {
            file: file.clone(),
            line: raw.line,
            path: path.clone(),
        };
        let value = match raw.value {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::UInt(u) => match i64::try_from(u) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::UInt(u),
            },
            RawValue::Float(f) => Value::Float(f),
            RawValue::Str(s) => Value::Str(s),
            RawValue::Seq(items) => Value::Seq(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| Node::from_raw(item, file, path.index(i)))
                    .collect(),
            ),
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(key, key_line, value)| {
                        let key_path = path.key(key.clone());
                        Entry {
                            key_origin: Origin {
                                file: file.clone(),
                                line: key_line,
                                path: key_path.clone(),
                            },
                            value: Node::from_raw(value, file, key_path),
                            key,
                        }
                    })
                    .collect(),
            ),
        };
        Node {
            value,
            tag: raw.tag,
            origin,
        }
    }

    /// Only `!replace` and the YAML core tags (`!!str`, ...) mean something here; any
    /// other tag is most likely a typo of `!replace` and must not be ignored.
    fn check_tags(&self) -> Result<(), ProfileError> {
        if let Some(tag) = &self.tag
            && tag != REPLACE_TAG
            && !tag.starts_with("tag:yaml.org,2002:")
            && !tag.starts_with("!!")
        {
            return Err(self.origin.error(format!(
                "unknown tag '{tag}' (the only tag osforge knows is {REPLACE_TAG})"
            )));
        }
        match &self.value {
            Value::Seq(items) => items.iter().try_for_each(Node::check_tags),
            Value::Map(entries) => entries.iter().try_for_each(|e| e.value.check_tags()),
            _ => Ok(()),
        }
    }

    pub fn is_replace(&self) -> bool {
        self.tag.as_deref() == Some(REPLACE_TAG)
    }

    pub fn is_scalar(&self) -> bool {
        !matches!(self.value, Value::Seq(_) | Value::Map(_))
    }

    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The deepest node on `path`, and whether the whole path was found. Errors about
    /// a missing key are reported at the nearest ancestor that exists.
    pub fn lookup(&self, path: &KeyPath) -> (&Node, bool) {
        let mut node = self;
        for segment in path.segments() {
            let next = match (segment, &node.value) {
                (PathSegment::Key(k), Value::Map(_)) => node.get(k),
                (PathSegment::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// The value as JSON (tags dropped): template variables, and trees in tests.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// The tree as serde-saphyr hands it over, before origins are attached.
struct RawNode {
    value: RawValue,
    tag: Option<String>,
    line: u32,
}

enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<RawNode>),
    Map(Vec<(String, u32, RawNode)>),
}

/// Parses YAML text with osforge's options; the error is (line, one-line message).
fn parse_raw(text: &str) -> Result<Option<RawNode>, (Option<u32>, String)> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Option<RawNode>>(text, options) {
        Ok(node) => Ok(node),
        Err(err) => {
            let inner = err.without_snippet();
            let line = inner
                .location()
                .and_then(|l| u32::try_from(l.line()).ok())
                .filter(|&l| l > 0);
            let mut message = one_line(&serde_saphyr::UserMessageFormatter.format_message(inner));
            // A flow collection left open is found lines later, where the next
            // key no longer fits in it; say where it was opened.
            if let Some((bracket, opened)) = unclosed_flow_bracket(text, line.unwrap_or(u32::MAX))
                && Some(opened) != line
            {
                message.push_str(&format!(
                    " (the '{bracket}' on line {opened} is not closed)"
                ));
            }
            Err((line, message))
        }
    }
}

/// The innermost `[` or `{` still open before line `until`, outside quotes and
/// comments, with its line.
fn unclosed_flow_bracket(text: &str, until: u32) -> Option<(char, u32)> {
    let mut open: Vec<(char, u32)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let number = n as u32 + 1;
        if number >= until {
            break;
        }
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') if previous.is_whitespace() => break,
                (None, '\'' | '"') => quote = Some(c),
                (None, '[' | '{') => open.push((c, number)),
                (None, ']' | '}') => {
                    open.pop();
                }
                _ => {}
            }
            previous = c;
        }
    }
    open.pop()
}

/// Checks that `text` is YAML (for rendered cloud-init files) and returns its top
/// node kind: "a map", "a list", ... or `None` for an empty document.
pub(crate) fn yaml_top_kind(text: &str) -> Result<Option<&'static str>, String> {
    match parse_raw(text) {
        Ok(None) => Ok(None),
        Ok(Some(raw)) => Ok(Some(match raw.value {
            RawValue::Map(_) => "a map",
            RawValue::Seq(_) => "a list",
            RawValue::Null => "null",
            _ => "a scalar",
        })),
        Err((Some(line), message)) => Err(format!("line {line}: {message}")),
        Err((None, message)) => Err(message),
    }
}

/// Parses a YAML scalar or flow collection given on the command line.
pub(crate) fn parse_cli_value(text: &str) -> Result<Value, String> {
    match parse_raw(text) {
        Ok(None) => Ok(Value::Null),
        Ok(Some(raw)) => {
            let node = Node::from_raw(raw, &Rc::from(Path::new("--var")), KeyPath::root());
            Ok(node.value)
        }
        Err((_, message)) => Err(message),
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned: Spanned<Tagged<RawContent>> = Spanned::deserialize(deserializer)?;
        Ok(RawNode {
            value: spanned.value.0.0,
            tag: spanned.value.1,
            line: u32::try_from(spanned.referenced.line()).unwrap_or(0),
        })
    }
}

struct RawContent(RawValue);

impl<'de> Deserialize<'de> for RawContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawContent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawContent, E> {
        Ok(RawContent(RawValue::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<RawContent, E> {
        Ok(RawContent(RawValue::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawContent, D::Error> {
        RawContent::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawContent, E> {
        Ok(RawContent(RawValue::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawContent, E> {
        Ok(RawContent(RawValue::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawContent, E> {
        Ok(RawContent(RawValue::UInt(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawContent, E> {
        i64::try_from(v)
            .map(|i| RawContent(RawValue::Int(i)))
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawContent, E> {
        u64::try_from(v)
            .map(|u| RawContent(RawValue::UInt(u)))
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawContent, E> {
        Ok(RawContent(RawValue::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawContent, E> {
        Ok(RawContent(RawValue::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawContent, E> {
        Ok(RawContent(RawValue::Str(v)))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawContent, E> {
        String::from_utf8(v.to_vec())
            .map(|s| RawContent(RawValue::Str(s)))
            .map_err(|_| E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawContent, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<RawNode>()? {
            items.push(item);
        }
        Ok(RawContent(RawValue::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawContent, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Spanned<String>, RawNode>()? {
            let line = u32::try_from(key.referenced.line()).unwrap_or(0);
            entries.push((key.value, line, value));
        }
        Ok(RawContent(RawValue::Map(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        Node::parse(text, Path::new("t.yaml")).unwrap()
    }

    #[test]
    fn nodes_remember_their_line_tag_and_path() {
        let root = parse("a: 1\nusers:\n  - name: ops\n    uid: 7\nb: !replace [x, y]\n");
        let (uid, found) = root.lookup(&KeyPath::parse("users[0].uid"));
        assert!(found);
        assert_eq!(uid.value, Value::Int(7));
        assert_eq!(uid.origin.line, 4);
        assert_eq!(uid.origin.path.to_string(), "users[0].uid");
        let b = root.get("b").unwrap();
        assert!(b.is_replace());
        assert_eq!(root.entry("users").unwrap().key_origin.line, 2);
    }

    #[test]
    fn yaml_1_1_booleans_and_leading_zero_numbers_stay_strings() {
        let root = parse("a: yes\nb: [y, n, on]\nmode: 0644\nt: true\nn: 10\n");
        assert_eq!(root.get("a").unwrap().value, Value::Str("yes".into()));
        assert_eq!(root.get("mode").unwrap().value, Value::Str("0644".into()));
        assert_eq!(root.get("t").unwrap().value, Value::Bool(true));
        assert_eq!(root.get("n").unwrap().value, Value::Int(10));
        assert_eq!(
            root.get("b").unwrap().to_json(),
            serde_json::json!(["y", "n", "on"])
        );
    }

    #[test]
    fn a_missing_path_stops_at_the_nearest_existing_ancestor() {
        let root = parse("distro:\n  name: debian\n");
        let (node, found) = root.lookup(&KeyPath::parse("distro.suite"));
        assert!(!found);
        assert_eq!(node.origin.path.to_string(), "distro");
    }

    #[test]
    fn an_unclosed_bracket_is_a_syntax_error_that_says_where_it_opened() {
        let err = Node::parse(
            "inherits: [base]\npackages: [a, b\nhostname: x\n",
            Path::new("p.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.yaml:3: YAML syntax error: "), "{err}");
        assert!(err.contains("the '[' on line 2 is not closed"), "{err}");
        assert_eq!(unclosed_flow_bracket("a: '['\nb: [x] # [\n", 9), None);
    }

    #[test]
    fn unknown_tags_and_bad_yaml_are_errors_with_a_line() {
        let e = Node::parse("a: !replac [1]\n", Path::new("t.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.yaml:1: a: unknown tag '!replac'"),
            "{e}"
        );
        let e = Node::parse("a: [1\n", Path::new("t.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("t.yaml:1: "), "{e}");
        let e = Node::parse("a: 1\na: 2\n", Path::new("t.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("t.yaml:2: "), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn an_empty_file_is_an_empty_map() {
        assert_eq!(parse("# nothing\n").value, Value::Map(Vec::new()));
    }
}
