//! Booting images in QEMU and watching their serial console: the one runner
//! behind `osforge boot` and the boot tests.
//!
//! ```text
//!   VmConfig (image, firmware, media, seeds, memory, accel)
//!      │ qemu::command()      pure: the QEMU argument list, unit-tested
//!      ▼
//!   run::run(config, Watch)   spawns QEMU (serial console on its stdout),
//!      │                      copies the console out as it arrives, stops
//!      ▼                      when `until` accepts it, on timeout or exit
//!   Outcome { ending, console, elapsed }
//! ```
//!
//! QEMU never outlives the process that started it: it is killed when its
//! handle is dropped, and the kernel kills it (`PR_SET_PDEATHSIG`) if osforge
//! dies without running destructors (SIGTERM's handler exits directly, and
//! SIGKILL cannot be caught).

pub mod accel;
pub mod image;
pub mod qemu;
pub mod run;
pub mod seed;

use std::io;
use std::path::PathBuf;

pub use accel::{Accel, AccelChoice, AccelRequest};
pub use image::ImageFormat;
pub use qemu::{DirectKernel, Firmware, Media, VmConfig};
pub use run::{Ending, Outcome, Watch};

/// The QEMU binary for x86-64 guests.
pub const QEMU: &str = "qemu-system-x86_64";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the image {path}")]
    ReadingImage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a file")]
    NotAFile { path: PathBuf },
    #[error("{media} cannot boot a {format} image (an ISO boots as cd or usb)")]
    MediaMismatch { media: Media, format: ImageFormat },
    #[error("firmware file {path} is missing (Debian package ovmf)")]
    FirmwareMissing { path: PathBuf },
    #[error("cannot copy the OVMF variables {from} to {to}")]
    CopyingVars {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("KVM is not usable: {reason}")]
    KvmUnusable { reason: String },
    #[error("cannot start {program} (Debian package qemu-system-x86)")]
    Spawning {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("waiting for QEMU failed")]
    Waiting(#[source] io::Error),
    #[error("cannot write the console log {path}")]
    WritingLog {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the seed directory {path} is not a directory")]
    SeedNotADirectory { path: PathBuf },
    #[error("cannot write the seed ISO {path}")]
    WritingSeed {
        path: PathBuf,
        #[source]
        source: crate::formats::iso::Error,
    },
    #[error("cannot create the seed ISO {path}")]
    CreatingSeed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
