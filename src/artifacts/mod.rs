//! Artifact writers: what the pipeline makes from a configured rootfs.

pub mod disk;
pub mod live_iso;
pub mod netboot;
