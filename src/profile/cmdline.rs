//! Kernel command lines: each parameter checked the way the kernel will split it.
//!
//! The kernel splits its command line on spaces outside double quotes
//! (`lib/cmdline.c: next_arg`), so a rendered parameter with a bare space would
//! silently become two; a stray quote swallows what follows; a control character
//! ends up in `/proc/cmdline` and in GRUB's config. These are errors here, before
//! any image is built. x86's `COMMAND_LINE_SIZE` is 2048 bytes with the final NUL.

use std::fmt;

use serde::{Serialize, Serializer};

/// x86's `COMMAND_LINE_SIZE`, including the terminating NUL.
pub const COMMAND_LINE_SIZE: usize = 2048;
/// The longest command line the kernel keeps whole.
pub const MAX_CMDLINE_BYTES: usize = COMMAND_LINE_SIZE - 1;

/// Why a parameter is not one kernel parameter.
pub fn check_param(param: &str) -> Result<(), String> {
    let reason = if param.is_empty() {
        Some("is empty")
    } else if param.chars().any(char::is_control) {
        Some("contains a control character")
    } else if param.matches('"').count() % 2 == 1 {
        Some("has unbalanced quotes")
    } else if has_unquoted_space(param) {
        Some("contains whitespace")
    } else if param.trim_start_matches('"').starts_with('=') {
        Some("has an empty key")
    } else {
        None
    };
    match reason {
        Some(r) => Err(format!("'{param}' is not a valid kernel parameter ({r})")),
        None => Ok(()),
    }
}

fn has_unquoted_space(param: &str) -> bool {
    let mut quoted = false;
    for c in param.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return true,
            _ => {}
        }
    }
    false
}

/// Splits a command-line fragment as the kernel would (spaces outside quotes).
pub fn split_params(text: &str) -> Result<Vec<String>, String> {
    if text.matches('"').count() % 2 == 1 {
        return Err(format!("'{text}' has unbalanced quotes"));
    }
    let mut params = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    params.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        params.push(current);
    }
    for p in &params {
        check_param(p)?;
    }
    Ok(params)
}

/// A checked kernel command line: parameters in order, within the size limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCmdline {
    params: Vec<String>,
}

impl KernelCmdline {
    /// Builds a command line from parameters that were each checked.
    pub fn new(params: Vec<String>) -> Result<Self, String> {
        for p in &params {
            check_param(p)?;
        }
        let line = KernelCmdline { params };
        line.check_length()?;
        Ok(line)
    }

    pub fn params(&self) -> &[String] {
        &self.params
    }

    /// Adds parameters given as one string (`--cmdline-append "quiet nomodeset"`).
    pub fn append(&mut self, text: &str) -> Result<(), String> {
        let mut params = split_params(text)?;
        let before = self.params.len();
        self.params.append(&mut params);
        if let Err(e) = self.check_length() {
            self.params.truncate(before);
            return Err(e);
        }
        Ok(())
    }

    fn check_length(&self) -> Result<(), String> {
        let len = self.to_string().len();
        if len > MAX_CMDLINE_BYTES {
            return Err(format!(
                "the kernel command line is {len} bytes, longer than {MAX_CMDLINE_BYTES} \
                 (x86 COMMAND_LINE_SIZE is {COMMAND_LINE_SIZE} with the final NUL)"
            ));
        }
        Ok(())
    }

    /// The value of the last `key=` parameter, as the kernel reads it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().rev().find_map(|p| {
            p.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .or_else(|| (p == key).then_some(""))
        })
    }
}

impl fmt::Display for KernelCmdline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.params.join(" "))
    }
}

impl Serialize for KernelCmdline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_parameters_pass_including_quoted_spaces() {
        for ok in [
            "console=ttyS0,115200n8",
            "quiet",
            "isolcpus=2-5",
            "dyndbg=\"file foo.c +p\"",
            "root=UUID=abc",
        ] {
            assert_eq!(check_param(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let reason = |p: &str| check_param(p).unwrap_err();
        assert_eq!(
            reason("isolcpus= 2"),
            "'isolcpus= 2' is not a valid kernel parameter (contains whitespace)"
        );
        assert!(reason("a=\"b").contains("unbalanced quotes"));
        assert!(reason("=1").contains("empty key"));
        assert!(reason("a=\tb").contains("control character"));
        assert!(reason("").contains("is empty"));
    }

    #[test]
    fn appended_text_is_split_like_the_kernel_does() {
        let mut line = KernelCmdline::new(vec!["console=ttyS0".into()]).unwrap();
        line.append("  quiet  dyndbg=\"a b\" x=1 ").unwrap();
        assert_eq!(line.to_string(), "console=ttyS0 quiet dyndbg=\"a b\" x=1");
        assert_eq!(line.get("x"), Some("1"));
        assert_eq!(line.get("quiet"), Some(""));
        assert!(line.append("bad=\"quote").is_err());
        assert_eq!(line.params().len(), 4, "a failed append changes nothing");
    }

    #[test]
    fn a_command_line_longer_than_the_kernel_keeps_is_refused() {
        let long = format!("x={}", "a".repeat(MAX_CMDLINE_BYTES));
        assert!(
            KernelCmdline::new(vec![long])
                .unwrap_err()
                .contains("COMMAND_LINE_SIZE")
        );
        let mut line = KernelCmdline::new(vec!["a=1".into()]).unwrap();
        let fits = format!("b={}", "c".repeat(MAX_CMDLINE_BYTES - 6));
        line.append(&fits).unwrap();
        assert_eq!(line.to_string().len(), MAX_CMDLINE_BYTES);
        assert!(line.append("d").is_err());
    }
}
