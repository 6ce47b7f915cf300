//! Artifact writers: what the pipeline makes from a configured rootfs.

pub mod live_iso;
