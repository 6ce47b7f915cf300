//! A write-once qcow2 (version 3) writer.
//!
//! osforge ships VM images as qcow2, and writes them itself rather than through
//! `qemu-img convert` so that the disk builder can stream partitions (ext4 images,
//! a FAT ESP, GPT headers) straight into the image without a raw temporary file
//! of the whole disk, compress clusters on every core, and produce the same bytes
//! whatever the number of threads. The writer knows nothing of profiles: it maps
//! a virtual disk ([`DiskSource`], or a plain byte stream) to a qcow2 file.
//!
//! Because the image is written once, from start to end, the layout is chosen as
//! the data goes by and nothing is ever rewritten except the header:
//!
//! ```text
//!  cluster 0        header (+ header-extension end marker), written last
//!  clusters 1..     guest data in guest order: standard clusters, compressed
//!                   clusters packed back to back, and each L2 table right
//!                   after the data it maps
//!  then             L1 table | refcount blocks | refcount table
//! ```
//!
//! Zero clusters (holes in the source, or clusters that read as zeros) are not
//! allocated at all. Compressed clusters are raw deflate with a 4 KiB window
//! (what qemu's `inflateInit2(-12)` accepts) or zstd frames; a cluster that does
//! not shrink is stored uncompressed, as qemu does.
//!
//! [`Qcow2Reader`] reads an image back as the guest sees it (for tests and
//! `osforge inspect`).
//!
//! Usage: [`Qcow2Writer::new`] with [`Options`], then [`Qcow2Writer::write_disk`]
//! for a seekable disk or [`Qcow2Writer::write_stream`] for a pipe.

mod allocator;
mod codec;
mod header;
mod layout;
mod pipeline;
#[cfg(test)]
mod readback;
pub mod reader;
mod refcount;
mod source;
pub(crate) mod table;
mod writer;

use std::fmt;
use std::io;
use std::str::FromStr;

pub use reader::{Qcow2Info, Qcow2Reader, ReadError};
pub use source::{CompositeDisk, DiskSource, Extent, ExtentData, RawFile};
pub use writer::{Options, Qcow2Writer, Summary};

/// Cluster sizes accepted: 4 KiB (smaller clusters make metadata dominate) up to
/// 2 MiB, qemu's implementation limit.
pub const MIN_CLUSTER_SIZE: u32 = 4096;
pub const MAX_CLUSTER_SIZE: u32 = 2 << 20;
/// qemu-img's default, and a good balance of metadata size and compression.
pub const DEFAULT_CLUSTER_SIZE: u32 = 64 << 10;

/// How data clusters are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Standard (uncompressed) clusters only.
    None,
    /// Raw deflate, 4 KiB window: qcow2's `zlib` compression type.
    Zlib,
    /// zstd frames: qcow2's `zstd` compression type (qemu 5.1 and later).
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 3] = [Compression::None, Compression::Zlib, Compression::Zstd];

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Zstd => "zstd",
        }
    }

    /// The level used when none is given. zstd: qemu's (the library default, 3).
    /// zlib: qemu uses zlib's level 6; the zlib-rs encoder used here only matches
    /// that ratio in a 4 KiB window at its level 9 (its levels 3 to 8 use
    /// zlib-ng's faster "medium" strategy and came out about 3 % larger on a
    /// root filesystem), and level 9 is still faster than zlib's 6.
    pub fn default_level(self) -> Option<u32> {
        match self {
            Compression::None => None,
            Compression::Zlib => Some(9),
            Compression::Zstd => Some(3),
        }
    }

    /// Inclusive range of accepted levels; `None` when the method has no levels.
    pub fn level_range(self) -> Option<(u32, u32)> {
        match self {
            Compression::None => None,
            Compression::Zlib => Some((1, 9)),
            Compression::Zstd => Some((1, 22)),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown compression '{s}' (expected none, zlib or zstd)"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the source disk at byte {offset}")]
    ReadingSource {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot find the data regions of the source disk")]
    FindingDataRanges(#[source] io::Error),
    #[error("writing the image failed")]
    Writing(#[source] io::Error),
    #[error("cluster size {cluster_size_bytes} is not a power of two from 4K to 2M")]
    BadClusterSize { cluster_size_bytes: u64 },
    #[error("compression {compression} has no levels, but level {level} was given")]
    LevelWithoutCompression {
        compression: Compression,
        level: u32,
    },
    #[error("level {level} is out of range for {compression} (expected {min}..={max})")]
    BadLevel {
        compression: Compression,
        level: u32,
        min: u32,
        max: u32,
    },
    #[error("cannot set up the {compression} compressor: {reason}")]
    CreatingCompressor {
        compression: Compression,
        reason: String,
    },
    #[error(
        "a virtual size of {virtual_size_bytes} bytes needs an L1 table of {l1_table_bytes} bytes \
         with {cluster_size_bytes}-byte clusters; qemu opens at most {max_bytes} (use larger clusters)"
    )]
    VirtualSizeTooLarge {
        virtual_size_bytes: u64,
        cluster_size_bytes: u32,
        l1_table_bytes: u64,
        max_bytes: u64,
    },
    #[error(
        "the image grew to {file_size_bytes} bytes, past what a {cluster_size_bytes}-byte-cluster \
         qcow2 can address ({max_bytes} bytes)"
    )]
    ImageTooLarge {
        file_size_bytes: u64,
        cluster_size_bytes: u32,
        max_bytes: u64,
    },
    #[error("extent at byte {offset} ({len_bytes} bytes) {reason}")]
    BadExtent {
        offset: u64,
        len_bytes: u64,
        reason: &'static str,
    },
    #[error("the compressor failed (panicked) on guest cluster {guest_cluster}")]
    CompressorFailed { guest_cluster: u64 },
    #[error("the compression pipeline stopped unexpectedly")]
    PipelineStopped,
}
