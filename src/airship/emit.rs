//! The osforge side of an import: the profile sections mapped values go
//! into, each remembering the Airship file and key it came from, and the
//! YAML text written for them, with that origin as a comment above it.
//!
//! The text is written by hand rather than serialised, because comments are
//! the point: a reviewer reads the profile beside the Airship tree.

use std::fmt::Write as _;

/// A value and where in the Airship tree it came from (`file: key.path`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sourced<T> {
    pub value: T,
    pub from: String,
}

pub(crate) fn sourced<T>(value: T, from: impl Into<String>) -> Sourced<T> {
    Sourced {
        value,
        from: from.into(),
    }
}

/// A sysctl or limit value: a number, or text as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Int(i64),
    Text(String),
}

impl Scalar {
    /// Numbers written as strings (`'1'`, as Airship's defaults do) become numbers.
    pub fn from_text(text: &str) -> Scalar {
        match text.parse::<i64>() {
            Ok(i) if !(text.len() > 1 && text.starts_with('0')) => Scalar::Int(i),
            _ => Scalar::Text(text.to_string()),
        }
    }

    fn yaml(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Text(t) => quote(t),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Repo {
    pub name: String,
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct User {
    pub name: String,
    pub shell: Option<String>,
    pub uid: Option<u32>,
    pub groups: Vec<String>,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limit {
    pub domain: String,
    pub kind: String,
    pub item: String,
    pub value: Scalar,
}

/// A file or a directory: `content: None` is a directory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PathEntry {
    pub path: String,
    pub content: Option<String>,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Partition {
    pub name: String,
    pub size: String,
    pub kind: &'static str,
    pub filesystem: &'static str,
    pub mount: Option<String>,
    pub fstab_options: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Disk {
    pub size: Option<Sourced<String>>,
    pub compression: Option<Sourced<&'static str>>,
    /// Empty: the inherited layout (qcow2-host's, Airship's default) stays.
    pub partitions: Vec<Sourced<Partition>>,
    /// Lines for the comment above the partitions (placement notes).
    pub notes: Vec<String>,
}

/// Everything an import puts into one profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Parts {
    pub arch: Option<Sourced<String>>,
    pub mirror: Option<Sourced<String>>,
    pub components: Option<Sourced<Vec<String>>>,
    pub repos: Vec<Sourced<Repo>>,
    pub packages: Vec<Sourced<String>>,
    pub users: Vec<Sourced<User>>,
    pub sysctl: Vec<Sourced<(String, Scalar)>>,
    pub modules_load: Vec<Sourced<String>>,
    pub modules_blacklist: Vec<Sourced<String>>,
    pub limits: Vec<Sourced<Limit>>,
    pub files: Vec<Sourced<PathEntry>>,
    pub directories: Vec<Sourced<PathEntry>>,
    pub enable: Vec<Sourced<String>>,
    pub mask: Vec<Sourced<String>>,
    pub cmdline: Vec<Sourced<String>>,
    /// cloud_init keys (`user_data`, `network_data`, ...) → template paths.
    pub cloud_init: Vec<Sourced<(&'static str, String)>>,
    pub squashfs_compression: Option<Sourced<String>>,
    pub disk: Option<Disk>,
}

impl Parts {
    /// Adds `other`'s values after this one's (lists append, as profiles merge).
    pub fn append(&mut self, other: Parts) {
        macro_rules! take {
            ($($field:ident),*) => { $( self.$field.extend(other.$field); )* };
        }
        take!(
            repos,
            packages,
            users,
            sysctl,
            modules_load,
            modules_blacklist,
            limits,
            files,
            directories,
            enable,
            mask,
            cmdline,
            cloud_init
        );
        macro_rules! replace {
            ($($field:ident),*) => { $( if other.$field.is_some() { self.$field = other.$field; } )* };
        }
        replace!(arch, mirror, components, squashfs_compression, disk);
    }
}

/// The head of a generated profile.
pub(crate) struct Header<'a> {
    /// Comment lines at the top of the file.
    pub comment: &'a [String],
    pub description: &'a str,
    pub inherits: &'a [&'a str],
}

/// Renders a profile: header, then the sections in the order the schema
/// documents them, each value under a comment naming its Airship origin.
pub(crate) fn render(header: &Header, parts: &Parts) -> String {
    let mut y = String::new();
    for line in header.comment {
        if line.is_empty() {
            y.push_str("#\n");
        } else {
            let _ = writeln!(y, "# {line}");
        }
    }
    let _ = writeln!(y, "description: {}", quote(header.description));
    let inherits: Vec<String> = header.inherits.iter().map(|i| quote(i)).collect();
    let _ = writeln!(y, "inherits: [{}]", inherits.join(", "));

    if parts.arch.is_some() || parts.mirror.is_some() || parts.components.is_some() {
        y.push_str("\ndistro:\n");
        if let Some(a) = &parts.arch {
            let _ = write!(y, "  # {}\n  arch: {}\n", a.from, quote(&a.value));
        }
        if let Some(m) = &parts.mirror {
            let _ = write!(y, "  # {}\n  mirror: {}\n", m.from, quote(&m.value));
        }
        if let Some(c) = &parts.components {
            let _ = write!(y, "  # {}\n  components: {}\n", c.from, flow(&c.value));
        }
    }
    section(&mut y, "repos", &parts.repos, |r| {
        format!(
            "- {{name: {}, uri: {}, suite: {}, components: {}}}",
            quote(&r.name),
            quote(&r.uri),
            quote(&r.suite),
            flow(&r.components)
        )
    });
    section(&mut y, "packages", &parts.packages, |p| {
        format!("- {}", quote(p))
    });
    section(&mut y, "users", &parts.users, |u| {
        let mut fields = vec![format!("name: {}", quote(&u.name))];
        if let Some(uid) = u.uid {
            fields.push(format!("uid: {uid}"));
        }
        if !u.groups.is_empty() {
            fields.push(format!("groups: {}", flow(&u.groups)));
        }
        if let Some(shell) = &u.shell {
            fields.push(format!("shell: {}", quote(shell)));
        }
        if let Some(hash) = &u.password_hash {
            fields.push(format!("password_hash: {}", quote(hash)));
        }
        format!("- {{{}}}", fields.join(", "))
    });
    section(&mut y, "sysctl", &parts.sysctl, |(k, v)| {
        format!("{}: {}", quote(k), v.yaml())
    });
    if !parts.modules_load.is_empty() || !parts.modules_blacklist.is_empty() {
        y.push_str("\nkernel_modules:\n");
        subsection(&mut y, "load", &parts.modules_load, |m| {
            format!("- {}", quote(m))
        });
        subsection(&mut y, "blacklist", &parts.modules_blacklist, |m| {
            format!("- {}", quote(m))
        });
    }
    section(&mut y, "limits", &parts.limits, |l| {
        format!(
            "- {{domain: {}, type: {}, item: {}, value: {}}}",
            quote(&l.domain),
            quote(&l.kind),
            quote(&l.item),
            l.value.yaml()
        )
    });
    section(&mut y, "files", &parts.files, path_entry);
    section(&mut y, "directories", &parts.directories, path_entry);
    if !parts.enable.is_empty() || !parts.mask.is_empty() {
        y.push_str("\nsystemd:\n");
        subsection(&mut y, "enable", &parts.enable, |u| {
            format!("- {}", quote(u))
        });
        subsection(&mut y, "mask", &parts.mask, |u| format!("- {}", quote(u)));
    }
    if !parts.cmdline.is_empty() {
        y.push_str("\nkernel:\n");
        subsection(&mut y, "cmdline", &parts.cmdline, |p| {
            format!("- {}", quote(p))
        });
    }
    if !parts.cloud_init.is_empty() {
        y.push_str("\ncloud_init:\n");
        for c in &parts.cloud_init {
            let _ = write!(
                y,
                "  # {}\n  {}: {}\n",
                c.from,
                c.value.0,
                quote(&c.value.1)
            );
        }
    }
    if let Some(c) = &parts.squashfs_compression {
        let _ = write!(
            y,
            "\niso:\n  squashfs:\n    # {}\n    compression: {}\n    \
             # The inherited level is for zstd; null: this compressor's default.\n    \
             level: null\n",
            c.from,
            quote(&c.value)
        );
    }
    if let Some(disk) = &parts.disk {
        render_disk(&mut y, disk);
    }
    y
}

fn render_disk(y: &mut String, disk: &Disk) {
    if disk.size.is_none() && disk.compression.is_none() && disk.partitions.is_empty() {
        return;
    }
    y.push_str("\ndisk:\n");
    if let Some(s) = &disk.size {
        let _ = write!(y, "  # {}\n  size: {}\n", s.from, quote(&s.value));
    }
    if let Some(c) = &disk.compression {
        let _ = write!(y, "  # {}\n  compression: {}\n", c.from, c.value);
    }
    if disk.partitions.is_empty() {
        return;
    }
    for note in &disk.notes {
        let _ = writeln!(y, "  # {note}");
    }
    // Lists append when profiles merge: without !replace the inherited
    // layout's partitions would come first.
    y.push_str("  partitions: !replace\n");
    for p in &disk.partitions {
        let v = &p.value;
        let mut fields = vec![
            format!("name: {}", quote(&v.name)),
            format!("size: {}", quote(&v.size)),
            format!("type: {}", v.kind),
            format!("filesystem: {}", v.filesystem),
        ];
        if let Some(m) = &v.mount {
            fields.push(format!("mount: {}", quote(m)));
        }
        if let Some(o) = &v.fstab_options {
            fields.push(format!("fstab_options: {}", quote(o)));
        }
        let _ = write!(y, "    # {}\n    - {{{}}}\n", p.from, fields.join(", "));
    }
}

fn path_entry(e: &PathEntry) -> String {
    let mut s = format!("- path: {}\n", quote(&e.path));
    for (key, value) in [("mode", &e.mode), ("owner", &e.owner), ("group", &e.group)] {
        if let Some(v) = value {
            let _ = writeln!(s, "  {key}: {}", quote(v));
        }
    }
    if let Some(content) = &e.content {
        s.push_str("  content: ");
        s.push_str(&block(content, "    "));
    }
    s.trim_end_matches('\n').to_string()
}

fn section<T>(y: &mut String, key: &str, items: &[Sourced<T>], item: impl Fn(&T) -> String) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(y, "\n{key}:");
    items_at(y, "  ", items, item);
}

fn subsection<T>(y: &mut String, key: &str, items: &[Sourced<T>], item: impl Fn(&T) -> String) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(y, "  {key}:");
    items_at(y, "    ", items, item);
}

fn items_at<T>(y: &mut String, indent: &str, items: &[Sourced<T>], item: impl Fn(&T) -> String) {
    for i in items {
        let _ = writeln!(y, "{indent}# {}", i.from.replace('\n', " "));
        for line in item(&i.value).lines() {
            if line.is_empty() {
                y.push('\n');
            } else {
                let _ = writeln!(y, "{indent}{line}");
            }
        }
    }
}

/// A flow list of scalars: `[a, "b c"]`.
fn flow(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A scalar as YAML: plain when that reads back as the same string,
/// otherwise double-quoted (JSON's escapes are YAML's too).
pub(crate) fn quote(text: &str) -> String {
    let plain_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./@+=-".contains(c));
    let first_ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_');
    let reserved = matches!(
        text.to_ascii_lowercase().as_str(),
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
    );
    if plain_chars && first_ok && !reserved {
        text.to_string()
    } else {
        serde_json::to_string(text).expect("strings serialise")
    }
}

/// File content as a literal block when it reads back exactly (one final
/// newline, no leading spaces on the first line, printable text), else quoted.
fn block(content: &str, indent: &str) -> String {
    let fits = content.ends_with('\n')
        && !content.ends_with("\n\n")
        && !content.starts_with([' ', '\n'])
        && !content
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}');
    if !fits {
        return format!(
            "{}\n",
            serde_json::to_string(content).expect("strings serialise")
        );
    }
    let mut s = String::from("|\n");
    for line in content.lines() {
        if line.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "{indent}{line}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_back(yaml: &str) -> serde_json::Value {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn quoted_scalars_read_back_as_the_same_strings() {
        for text in [
            "plain",
            "yes",
            "0644",
            "12",
            "console=ttyS0,115200n8",
            "hugepagesz=1G",
            "a: b",
            "# not a comment",
            "* soft",
            "-dash",
            "tab\there",
            "\"quoted\"",
            "",
        ] {
            let doc = format!("k: {}\n", quote(text));
            assert_eq!(reads_back(&doc)["k"], serde_json::json!(text), "{doc}");
        }
        assert_eq!(quote("/etc/issue"), "/etc/issue");
        assert_eq!(quote("no"), "\"no\"");
    }

    #[test]
    fn file_contents_read_back_exactly_whether_block_or_quoted() {
        for content in [
            "#!/bin/bash\necho hello world\n",
            "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n",
            "no final newline",
            "two final newlines\n\n",
            "  leading spaces\n",
            "Airship Node \\l: \\n.\\o\n",
        ] {
            let e = PathEntry {
                path: "/f".into(),
                content: Some(content.into()),
                mode: Some("0644".into()),
                owner: None,
                group: None,
            };
            let doc = format!("files:\n{}\n", indent_all(&path_entry(&e)));
            let v = reads_back(&doc);
            assert_eq!(
                v["files"][0]["content"],
                serde_json::json!(content),
                "{doc}"
            );
            assert_eq!(v["files"][0]["mode"], "0644");
        }
    }

    fn indent_all(text: &str) -> String {
        text.lines()
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("  {l}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
