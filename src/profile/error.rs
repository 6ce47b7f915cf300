//! What can be wrong with a profile, said in one line that names the file, the line
//! and the key.
//!
//! Every profile error is the user's input being wrong, so the commands turn each one
//! into an [`InputError`] (exit code 2). The `Display` form is the whole message:
//! `profiles/bad.yaml:3: users[0].nmae: unknown key (expected one of name, uid, ...)`,
//! `file:line:` first as compilers print it, so editors can jump to it.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::InputError;

/// A place in a source file: the file as the user named it (relative paths stay
/// relative) and, when known, the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: Option<u32>,
}

impl SourceLocation {
    pub fn new(file: impl Into<PathBuf>, line: Option<u32>) -> Self {
        SourceLocation {
            file: file.into(),
            line: line.filter(|&l| l > 0),
        }
    }

    pub fn file_only(file: &Path) -> Self {
        SourceLocation::new(file, None)
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// One step into a YAML document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// Where a value sits inside a document, printed as users write it:
/// `users[0].name`, `sysctl.vm.swappiness`, `kernel.cmdline[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<PathSegment>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }

    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.0.push(PathSegment::Key(key.into()));
        next
    }

    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(PathSegment::Index(index));
        next
    }

    /// Parses the printed form back (`a.b[2].c`); keys containing dots cannot be
    /// told apart from nesting, so this is for paths the code itself writes.
    pub fn parse(text: &str) -> Self {
        let mut path = KeyPath::root();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                path = path.key(key);
            }
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    path = path.index(i);
                }
                rest = &rest[close + 1..];
            }
        }
        path
    }

    /// The path without its last segment (the root stays the root).
    #[must_use]
    pub fn parent(&self) -> Self {
        let mut up = self.clone();
        up.0.pop();
        up
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(k) if i == 0 => f.write_str(k)?,
                PathSegment::Key(k) => write!(f, ".{k}")?,
                PathSegment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A profile, a key file, a file source or a template could not be read.
    #[error("{}: {reason}", path.display())]
    ReadingFile {
        path: PathBuf,
        reason: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML at all.
    #[error("{at}: YAML syntax error: {message}")]
    ParsingYaml { at: SourceLocation, message: String },
    /// A key or value in a profile is wrong (unknown, mistyped, invalid, missing).
    #[error("{at}: {}{message}", path_prefix(path))]
    InvalidValue {
        at: SourceLocation,
        path: KeyPath,
        message: String,
    },
    /// `--profile NAME` names no profile in the search path.
    #[error("profile '{name}' not found (searched {searched})")]
    ProfileNotFound { name: String, searched: String },
    /// A template does not parse, or fails while rendering (an undefined variable).
    #[error("{at}: {message}")]
    RenderingTemplate { at: SourceLocation, message: String },
    /// A template rendered, but its output is not what cloud-init will read.
    #[error("{}: {message}", template.display())]
    InvalidRenderedFile { template: PathBuf, message: String },
    /// A command-line value (`--var`, `--cmdline-append`) is wrong.
    #[error("{flag}: {message}")]
    InvalidArgument { flag: String, message: String },
}

fn path_prefix(path: &KeyPath) -> String {
    if path.is_root() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl ProfileError {
    pub(crate) fn invalid(at: SourceLocation, path: KeyPath, message: impl Into<String>) -> Self {
        ProfileError::InvalidValue {
            at,
            path,
            message: one_line(&message.into()),
        }
    }

    pub(crate) fn reading(path: &Path, source: std::io::Error) -> Self {
        let reason = match source.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
            _ => source.to_string(),
        };
        ProfileError::ReadingFile {
            path: path.to_path_buf(),
            reason,
            source,
        }
    }

    /// Wraps the error for the command layer: a profile error is always bad input,
    /// so it exits with code 2 (see [`crate::error::exit_code_for`]).
    pub fn into_input_error(self) -> anyhow::Error {
        anyhow::Error::new(InputError(self.to_string()))
    }
}

/// Error text from other libraries may span lines; osforge prints one.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_print_as_users_write_them() {
        let p = KeyPath::root().key("users").index(0).key("nmae");
        assert_eq!(p.to_string(), "users[0].nmae");
        assert_eq!(KeyPath::root().index(3).to_string(), "[3]");
        assert_eq!(KeyPath::parse("users[0].nmae"), p);
        assert_eq!(
            KeyPath::parse("kernel.cmdline[2]"),
            KeyPath::root().key("kernel").key("cmdline").index(2)
        );
    }

    #[test]
    fn errors_print_file_line_path_and_message_on_one_line() {
        let e = ProfileError::invalid(
            SourceLocation::new("profiles/bad.yaml", Some(3)),
            KeyPath::parse("users[0].nmae"),
            "unknown key\n(expected one of name)",
        );
        assert_eq!(
            e.to_string(),
            "profiles/bad.yaml:3: users[0].nmae: unknown key; (expected one of name)"
        );
        let root = ProfileError::invalid(
            SourceLocation::file_only(Path::new("p.yaml")),
            KeyPath::root(),
            "empty",
        );
        assert_eq!(root.to_string(), "p.yaml: empty");
    }
}
