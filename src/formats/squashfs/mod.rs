//! A squashfs 4.0 writer: parallel, full-fidelity, reproducible.
//!
//! osforge writes squashfs itself because it is the root filesystem of every
//! live ISO and netboot image, and the existing writers each miss something a
//! root filesystem needs (see `shared/reference/crates.md`): this one compresses
//! blocks on every core yet writes them in one deterministic order, keeps hard
//! links, xattrs (security.capability included), devices, sparse and > 4 GiB
//! files, finds duplicate files (hash, then byte compare), packs tails into
//! fragments, and holds only a bounded amount of file data in memory.
//!
//! Usage: [`SquashfsWriter::new`], add entries (or let [`source`] walk a
//! directory or a tar stream), then [`SquashfsWriter::finish`].
//!
//! Layout written, in order (as mksquashfs does):
//! ```text
//!  superblock | compressor options? | data blocks and fragment blocks
//!  | inode table | directory table | fragment table | export table
//!  | id table | xattr table | padding to 4 KiB
//! ```

mod compressor;
mod data;
mod dir;
mod inode;
mod metadata;
pub mod source;
pub(crate) mod superblock;
mod tree;
mod writer;
mod xattr;

use std::io;

pub use compressor::Compression;
pub use data::{DataStats, FileContent};
pub use writer::{DeviceKind, EntryMeta, Options, SquashfsWriter, Summary, Xattrs};

/// Block sizes the format and the kernel accept.
pub const MIN_BLOCK_SIZE: u32 = 4096;
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the image failed")]
    Writing(#[source] io::Error),
    #[error("cannot read {path}")]
    ReadingSource {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    InvalidEntry { path: String, reason: String },
    #[error("{compression} failed: {reason}")]
    Codec {
        compression: Compression,
        reason: String,
    },
    #[error("block size {block_size} is not a power of two from 4K to 1M")]
    BadBlockSize { block_size: u32 },
    #[error("level {level} is out of range for {compression} (expected {min}..={max})")]
    BadLevel {
        compression: Compression,
        level: u32,
        min: u32,
        max: u32,
    },
    #[error("more than 65536 distinct owners (uids and gids); squashfs cannot store them")]
    TooManyIds,
    #[error("the compression pipeline stopped unexpectedly")]
    PipelineStopped,
}
