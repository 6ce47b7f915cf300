//! `osforge doctor`: each external tool osforge may run, whether it is here,
//! its version, and what needs it. The list is `deps/packages.tsv`, the same
//! one `deps/setup` installs from, compiled in so the binary can answer on a
//! machine without the source tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::cli::GlobalArgs;

const PACKAGES_TSV: &str = include_str!("../../deps/packages.tsv");

#[derive(Debug, clap::Args)]
pub struct Args {}

/// One row of `deps/packages.tsv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// A command looked up on PATH, or an absolute path to a file.
    pub tool: String,
    /// The Debian package that provides it.
    pub package: String,
    /// `build` (needed by `make cut_image`), `container` (`make build`, `make
    /// package_qcow`), `image` (carried by the builder image) or `test` (`make test`).
    pub set: String,
    /// What needs it.
    pub needed_for: String,
}

#[derive(Debug, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub requirement: Requirement,
    /// Where it was found.
    pub path: Option<PathBuf>,
    /// The package's installed version (dpkg), else the tool's own `--version` line.
    pub version: Option<String>,
}

/// The rows of the package list; comments and blank lines skipped.
pub fn requirements() -> Vec<Requirement> {
    PACKAGES_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let mut fields = line.split('\t');
            Some(Requirement {
                tool: fields.next()?.to_string(),
                package: fields.next()?.to_string(),
                set: fields.next()?.to_string(),
                needed_for: fields.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn find_tool(tool: &str) -> Option<PathBuf> {
    if tool.starts_with('/') {
        return Path::new(tool).exists().then(|| PathBuf::from(tool));
    }
    let path = std::env::var_os("PATH")?;
    // Tools like mke2fs live in /usr/sbin, which a non-root PATH may lack.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// `$CARGO_HOME/bin`, else `~/.cargo/bin`.
fn cargo_bin() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"))
}

fn package_version(package: &str) -> Option<String> {
    // A tool built with cargo install (`cargo:CRATE@VERSION ...`): no dpkg
    // record; its own --version answers.
    if package.starts_with("cargo:") {
        return None;
    }
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev} ${Version}", package])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.strip_prefix("ii ")?.trim();
    (!version.is_empty()).then(|| version.to_string())
}

fn tool_version(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

pub fn examine(requirement: Requirement) -> Finding {
    // cargo install puts tools in ~/.cargo/bin, which PATH may lack (sudo,
    // a CI shell); deps/setup looks there too.
    let path = find_tool(&requirement.tool).or_else(|| {
        requirement
            .package
            .starts_with("cargo:")
            .then(|| cargo_bin().map(|bin| bin.join(&requirement.tool)))
            .flatten()
            .filter(|p| p.is_file())
    });
    let version = path.as_ref().and_then(|p| {
        package_version(&requirement.package).or_else(|| {
            // Only commands answer --version; files (boot images) have none.
            (!requirement.tool.starts_with('/'))
                .then(|| tool_version(p))
                .flatten()
        })
    });
    Finding {
        requirement,
        path,
        version,
    }
}

pub fn run(_args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let findings: Vec<Finding> = requirements().into_iter().map(examine).collect();
    let missing_for_build: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.path.is_none() && f.requirement.set == "build")
        .collect();
    if global.json {
        println!("{}", serde_json::to_string(&findings)?);
    } else if !global.quiet {
        print_table(&findings);
    }
    if !missing_for_build.is_empty() {
        let mut packages: Vec<&str> = Vec::new();
        for f in &missing_for_build {
            if !packages.contains(&f.requirement.package.as_str()) {
                packages.push(&f.requirement.package);
            }
        }
        anyhow::bail!(
            "missing what builds need: {} (install: deps/setup build, or apt-get install {})",
            missing_for_build
                .iter()
                .map(|f| f.requirement.tool.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            packages.join(" ")
        );
    }
    Ok(())
}

fn print_table(findings: &[Finding]) {
    let tool_width = findings
        .iter()
        .map(|f| short_tool(&f.requirement.tool).len())
        .max()
        .unwrap_or(0);
    let version_width = findings
        .iter()
        .map(|f| f.version.as_deref().unwrap_or("-").len())
        .max()
        .unwrap_or(0)
        .min(32);
    println!(
        "{:tool_width$}  {:7}  {:version_width$}  {:9}  needed for (package)",
        "tool", "status", "version", "set"
    );
    for f in findings {
        let r = &f.requirement;
        let status = if f.path.is_some() { "ok" } else { "MISSING" };
        let version: String = f
            .version
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(32)
            .collect();
        println!(
            "{:tool_width$}  {status:7}  {version:version_width$}  {:9}  {} ({})",
            short_tool(&r.tool),
            r.set,
            r.needed_for,
            // A cargo row's install flags are for deps/setup, not the reader.
            r.package.split(' ').next().unwrap_or(""),
        );
    }
}

/// Boot files are listed by path; the table shows the part a reader knows them by.
fn short_tool(tool: &str) -> &str {
    tool.strip_prefix("/usr/lib/")
        .or_else(|| tool.strip_prefix("/usr/share/"))
        .unwrap_or(tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_package_list_has_four_fields_and_a_known_set() {
        let rows = requirements();
        assert!(rows.len() >= 15, "{rows:?}");
        for r in &rows {
            assert!(
                matches!(r.set.as_str(), "build" | "test" | "container" | "image"),
                "{r:?}"
            );
            assert!(!r.package.is_empty() && !r.needed_for.is_empty(), "{r:?}");
        }
        assert!(
            rows.iter()
                .any(|r| r.tool == "mmdebstrap" && r.set == "build")
        );
        // Crates deps/setup builds are for the tests only: a build machine
        // needs no Rust toolchain beyond osforge itself.
        for r in rows.iter().filter(|r| r.package.starts_with("cargo:")) {
            assert_eq!(r.set, "test", "{r:?}");
            assert!(r.package.contains('@'), "a pinned version: {r:?}");
        }
    }

    #[test]
    fn a_tool_that_does_not_exist_is_reported_missing() {
        let finding = examine(Requirement {
            tool: "osforge-no-such-tool".into(),
            package: "none".into(),
            set: "build".into(),
            needed_for: "nothing".into(),
        });
        assert!(finding.path.is_none() && finding.version.is_none());
        let sh = examine(Requirement {
            tool: "sh".into(),
            package: "dash".into(),
            set: "build".into(),
            needed_for: "a shell".into(),
        });
        assert!(sh.path.is_some());
    }
}
