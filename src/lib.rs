//! osforge: a profile-driven factory for bootable OS images.
//!
//! The pipeline is `profile → rootfs → configure → artifacts → publish`; the on-disk
//! formats it writes live in [`formats`] and know nothing of profiles, so each is
//! also usable on its own (`osforge squashfs`, ...), the way mkfs tools are.

pub mod airship;
pub mod ansible;
pub mod artifacts;
pub mod blockcache;
pub mod boot;
pub mod cli;
pub mod commands;
pub mod container;
pub mod error;
pub mod formats;
pub mod inspect;
pub mod manifest;
pub mod netconfig;
pub mod osconfig;
pub mod pipeline;
pub mod profile;
pub mod publish;
pub mod rootfs;
pub mod s3;
pub mod util;
pub mod verify;
pub mod vm;
