//! Typed structs from a [`Node`] tree, with errors that say where.
//!
//! This is a serde `Deserializer` over the merged tree. Every value handed to a
//! visitor is a node with an origin, so when the visitor fails (an unknown key, a
//! list where a number belongs, a password that is not a hash) the error is pinned
//! to that node's file, line and key path at the point where the deserializer
//! called into serde — no path-tracking wrapper needed. The messages are rewritten
//! from serde's Rust vocabulary ("invalid type: sequence, expected u32") into the
//! profile author's ("expected an integer, got a list").

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use super::error::ProfileError;
use super::node::{Entry, Node, Origin, Value};

/// Deserializes `T` from `node`, reporting the first problem at its origin.
pub(crate) fn from_node<'a, T: serde::Deserialize<'a>>(node: &'a Node) -> Result<T, ProfileError> {
    T::deserialize(NodeDe(node)).map_err(|e| e.into_profile_error(&node.origin))
}

#[derive(Debug)]
pub(crate) struct DeError {
    message: String,
    at: Option<Origin>,
}

impl DeError {
    /// Pins the error to `origin` unless a deeper node already claimed it.
    fn at(mut self, origin: &Origin) -> Self {
        if self.at.is_none() {
            self.at = Some(origin.clone());
        }
        self
    }

    fn into_profile_error(self, fallback: &Origin) -> ProfileError {
        self.at.as_ref().unwrap_or(fallback).error(self.message)
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            at: None,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!(
            "expected {}, got {}",
            expected_words(exp),
            unexpected_words(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let found = unexpected_words(&unexp);
        match integer_range(&exp.to_string()) {
            Some((min, max)) => Self::custom(format!("{found} is out of range ({min} to {max})")),
            None => Self::custom(format!("{found} is not {}", expected_words(exp))),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = match closest(field, expected) {
            Some(near) => format!("did you mean '{near}'? "),
            None => String::new(),
        };
        Self::custom(format!(
            "unknown key ({hint}expected one of {})",
            expected.join(", ")
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!(
            "unknown value '{variant}' (expected one of {})",
            expected.join(", ")
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("missing key '{field}'"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format!("key '{field}' given twice"))
    }
}

/// serde names Rust types; say what a YAML author writes instead.
fn expected_words(exp: &dyn de::Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "an integer".into()
        }
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a boolean" | "a string" | "a map" => text,
        _ if text.starts_with("struct ") => "a map".into(),
        _ if text.starts_with("enum ") || text.starts_with("variant ") => "a string".into(),
        _ => text,
    }
}

fn integer_range(rust_type: &str) -> Option<(i128, u128)> {
    Some(match rust_type {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX as u128),
        "i16" => (i16::MIN.into(), i16::MAX as u128),
        "i32" => (i32::MIN.into(), i32::MAX as u128),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX as u128),
        _ => return None,
    })
}

fn unexpected_words(unexp: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match unexp {
        U::Bool(b) => format!("a boolean ({b})"),
        U::Unsigned(n) => format!("the integer {n}"),
        U::Signed(n) => format!("the integer {n}"),
        U::Float(f) => format!("the number {f}"),
        U::Char(c) => format!("'{c}'"),
        U::Str(s) => format!("'{s}'"),
        U::Unit | U::Option => "nothing (null)".into(),
        U::Seq => "a list".into(),
        U::Map => "a map".into(),
        other => other.to_string(),
    }
}

/// The expected key nearest to a typo, if it is near enough to be the likely intent.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|&(d, c)| d <= 2 && d < c.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

struct NodeDe<'a>(&'a Node);

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.0;
        match &node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) if *i >= 0 => visitor.visit_u64(*i as u64),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(Items { iter: items.iter() }),
            Value::Map(entries) => visitor.visit_map(Entries {
                iter: entries.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// Numbers and booleans are accepted where text is expected (`suite: 12`), as
    /// YAML authors expect; lists and maps are not.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::UInt(u) => visitor.visit_string(u.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    /// A key written with no value (`packages:`) is an empty list.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => visitor.visit_seq(Items { iter: [].iter() }),
            _ => self.deserialize_any(visitor),
        }
    }

    /// A section written with no value (`distro:`) is an empty map.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => visitor.visit_map(Entries {
                iter: [].iter(),
                value: None,
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    /// Enums are written as plain strings (`datasource: nocloud`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct tuple tuple_struct
    }
}

struct Items<'a> {
    iter: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            Some(node) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(|e| e.at(&node.origin)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Entries<'a> {
    iter: std::slice::Iter<'a, Entry>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some(&entry.value);
        let key: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(&entry.key);
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.at(&entry.key_origin))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value asked for before its key"))?;
        seed.deserialize(NodeDe(node))
            .map_err(|e| e.at(&node.origin))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct User {
        name: String,
        uid: Option<u32>,
        #[serde(default)]
        groups: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        users: Vec<User>,
        #[serde(default)]
        limits: BTreeMap<String, u32>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    enum Mode {
        #[serde(rename = "fast")]
        Fast,
    }

    fn err(text: &str) -> String {
        let node = Node::parse(text, Path::new("p.yaml")).unwrap();
        from_node::<Doc>(&node).unwrap_err().to_string()
    }

    #[test]
    fn an_unknown_key_names_its_line_path_and_the_keys_allowed() {
        assert_eq!(
            err("users:\n  - name: ops\n  - nmae: x\n"),
            "p.yaml:3: users[1].nmae: unknown key (did you mean 'name'? expected one of name, uid, groups)"
        );
    }

    #[test]
    fn a_wrong_type_says_what_was_expected_and_what_was_found() {
        assert_eq!(
            err("limits:\n  nofile: [1]\n"),
            "p.yaml:2: limits.nofile: expected an integer, got a list"
        );
        assert_eq!(
            err("users:\n  - name: a\n    uid: -1\n"),
            "p.yaml:3: users[0].uid: the integer -1 is out of range (0 to 4294967295)"
        );
        assert_eq!(
            err("users: {a: 1}\n"),
            "p.yaml:1: users: expected a list, got a map"
        );
    }

    #[test]
    fn a_missing_key_is_reported_at_its_map() {
        assert_eq!(
            err("users:\n  - uid: 4\n"),
            "p.yaml:2: users[0]: missing key 'name'"
        );
    }

    #[test]
    fn an_unknown_enum_value_lists_the_known_ones() {
        assert_eq!(
            err("mode: slow\n"),
            "p.yaml:1: mode: unknown value 'slow' (expected one of fast)"
        );
    }

    #[test]
    fn empty_sections_are_empty_and_scalars_read_as_text() {
        let node = Node::parse("users:\n  - name: 12\n    groups:\n", Path::new("p.yaml")).unwrap();
        let doc: Doc = from_node(&node).unwrap();
        assert_eq!(doc.users[0].name, "12");
        assert!(doc.users[0].groups.is_empty());
    }
}
