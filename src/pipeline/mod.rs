//! The build pipeline: profile -> rootfs -> configure -> artifacts -> publish.

pub mod cache;
