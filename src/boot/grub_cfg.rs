//! grub.cfg text shared by the live ISO and the disk images: kernel command
//! lines quoted for GRUB's parser, and menus rendered from tera templates
//! found in the template path.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Quotes a kernel command line word by word for grub.cfg. GRUB's shell-like
/// parser would otherwise expand `$` and split on `;`.
pub fn quote_cmdline(cmdline: &str) -> String {
    cmdline
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(quote_word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes one word only when it holds anything beyond plain characters, so
/// the usual `console=ttyS0,115200n8` stays readable.
pub fn quote_word(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.,:/=+-@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The first `name` in the template directories, searched in order.
pub fn find_template(dirs: &[PathBuf], name: &str) -> anyhow::Result<PathBuf> {
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "template {name} not found in the template path ({})",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Renders a grub.cfg template; errors name the template and give tera's
/// innermost message (the outer ones only say that rendering failed).
pub fn render(template: &Path, context: &tera::Context) -> anyhow::Result<String> {
    let source = std::fs::read_to_string(template)
        .with_context(|| format!("reading {}", template.display()))?;
    tera::Tera::one_off(&source, context, false)
        .map_err(|e| anyhow::anyhow!("{}: {}", template.display(), innermost(&e)))
}

fn innermost(e: &tera::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = s.to_string();
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_parameters_are_quoted_for_grub_only_when_needed() {
        assert_eq!(
            quote_word("console=ttyS0,115200n8"),
            "console=ttyS0,115200n8"
        );
        assert_eq!(
            quote_word("ds=nocloud;s=http://x/"),
            "'ds=nocloud;s=http://x/'"
        );
        assert_eq!(quote_word("a$b'c"), "'a$b'\\''c'");
        assert_eq!(quote_cmdline(" isolcpus=2-7  x=$y "), "isolcpus=2-7 'x=$y'");
    }

    #[test]
    fn template_errors_name_the_file_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("grub.cfg.tera");
        std::fs::write(&template, "linux /vmlinuz {{ cmdline }}\n").unwrap();
        let mut context = tera::Context::new();
        let e = render(&template, &context).unwrap_err().to_string();
        assert!(e.starts_with(&template.display().to_string()), "{e}");
        assert!(e.contains("cmdline"), "{e}");
        context.insert("cmdline", "quiet");
        assert_eq!(
            render(&template, &context).unwrap(),
            "linux /vmlinuz quiet\n"
        );
    }
}
