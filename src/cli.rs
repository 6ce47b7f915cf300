//! Command-line definitions. Each subcommand owns its argument struct in
//! `commands/<name>.rs`; this file only lists them.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(
    name = "osforge",
    version,
    about = "Bootable OS image factory: profiles in, ISO / qcow2 / squashfs out"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand understands.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build images (iso, qcow2, raw) from a host profile.
    Build(Box<commands::build::Args>),
    /// Boot an image (iso, qcow2, raw) in QEMU with its serial console on stdout; --expect makes it a check.
    Boot(commands::boot::Args),
    /// Write a bootable GPT disk image (qcow2 or raw) from a root tree and a profile's disk layout.
    Disk(commands::disk::Args),
    /// Convert a raw disk image (or a stream on stdin) to qcow2.
    Qcow2(commands::qcow2::Args),
    /// Write a squashfs 4.0 image from a directory or a tar stream.
    Squashfs(commands::squashfs::Args),
    /// Write a hybrid ISO 9660 image (BIOS + UEFI, CD + disk) from a staged directory.
    Iso(commands::iso::Args),
    /// Write a FAT12/16/32 image from a directory.
    Fat(commands::fat::Args),
    /// OCI images: write a tree as a single-layer oci-archive, or flatten an image layout into one tar.
    Oci(commands::oci::Args),
    /// Show what is in an ISO, qcow2, raw disk or squashfs (partitions, boot, files).
    Inspect(commands::inspect::Args),
    /// Check an artifact against its manifest (size, sha256) and its structure (tables, filesystems, boot catalog).
    Verify(commands::verify::Args),
    /// List the host profiles in the search path.
    Profiles(commands::profiles::Args),
    /// Show a profile merged, its cloud-init files and kernel command line rendered.
    Render(commands::render::Args),
    /// List the external tools osforge uses: found or not, version, what needs them.
    Doctor(commands::doctor::Args),
    /// List the stage cache (`ls`), or make room in it (`prune`, `clear`) beside running builds.
    Cache(commands::cache::Args),
    /// Write osforge profiles from an Airship image-builder manifests tree.
    ImportAirship(commands::import_airship::Args),
    /// Run as airshipctl's image-builder container: v1 environment and
    /// builder-conf.yaml, or VERSION=v2 and a YAML document on stdin.
    AirshipBuilder(commands::airship_builder::Args),
}

/// Turns clap's multi-line error into the one line osforge prints for every bad input:
/// what was wrong, with which argument, and what was expected.
pub fn parse_error_line(err: &clap::Error) -> String {
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let valid = match err.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(v)) => v.join(", "),
        _ => String::new(),
    };
    match err.kind() {
        ErrorKind::InvalidValue if !valid.is_empty() => {
            format!("invalid value '{value}' for '{arg}': expected one of {valid}")
        }
        ErrorKind::ValueValidation => {
            let cause = std::error::Error::source(err)
                .map(|s| s.to_string())
                .unwrap_or_default();
            format!("invalid value '{value}' for '{arg}': {cause}")
        }
        _ => {
            // Fall back to clap's own first line, minus its "error: " prefix.
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            first.trim_start_matches("error: ").to_string()
        }
    }
}
