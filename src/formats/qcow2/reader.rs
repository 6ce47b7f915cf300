//! Reading a qcow2 image's virtual disk: the header, then guest clusters
//! through the L1 and L2 tables, standard or compressed (zlib or zstd).
//!
//! The writer's tests and `osforge inspect` both need to see what a guest
//! would see, and neither should need qemu-img or nbd for it. The reader
//! covers what osforge and `qemu-img convert` write: versions 2 and 3,
//! uncompressed, zlib and zstd clusters, zero-flagged clusters. It refuses
//! what would make it silently wrong (a backing file, whose clusters show
//! through unallocated ones; encryption; an external data file; extended
//! L2 entries) instead of returning zeros where the guest sees data.
//!
//! Memory is bounded: the L1 table, one cached L2 table and one cached
//! decompressed cluster (readers such as a FAT driver read 512 bytes at a
//! time, and a compressed cluster is only decompressed once for all of them).

use std::io::{self, Read, Seek, SeekFrom};

use super::codec::DEFLATE_WINDOW_BITS;
use super::header::{MAGIC, compression_type, incompatible};
use super::table::{
    L1_TABLE_OFFSET_MASK, L2_COMPRESSED_BIT, L2_STANDARD_OFFSET_MASK, SECTOR_BYTES,
    compressed_offset_bits,
};
use super::{Compression, MAX_CLUSTER_SIZE};

/// Bytes of the version 2 header; version 3 headers say their own length.
const V2_HEADER_BYTES: usize = 72;
/// `incompatible_features` bits this reader understands: dirty (bit 0) and
/// corrupt (bit 1) only mark the refcounts as suspect, which reading ignores;
/// bit 3 says the compression type field is set.
const KNOWN_INCOMPATIBLE: u64 = 0b11 | incompatible::COMPRESSION_TYPE;
/// Bit 0 of a standard L2 entry (version 3): the cluster reads as zeros.
const L2_ZERO_FLAG: u64 = 1;
/// qemu opens images with clusters from 512 bytes (osforge writes 4 KiB and up).
const MIN_CLUSTER_BITS: u32 = 9;
/// L2 and L1 entries are 64-bit.
const ENTRY_BYTES: u64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a qcow2 image (no QFI\\xfb magic)")]
    NotQcow2,
    #[error("qcow2 version {version} is not supported (expected 2 or 3)")]
    UnsupportedVersion { version: u32 },
    #[error("invalid qcow2 header: {reason}")]
    BadHeader { reason: String },
    #[error(
        "the image uses qcow2 features this reader does not know (incompatible bits {bits:#x})"
    )]
    UnsupportedFeatures { bits: u64 },
    #[error("the image is encrypted (method {method}); it cannot be read without the key")]
    Encrypted { method: u32 },
    #[error("the image has a backing file ({name}); its unallocated clusters come from it")]
    BackingFile { name: String },
    #[error(
        "truncated: the {what} at byte {offset} ({len_bytes} bytes) is past the end of the \
         file ({file_size_bytes} bytes)"
    )]
    Truncated {
        what: &'static str,
        offset: u64,
        len_bytes: u64,
        file_size_bytes: u64,
    },
    #[error("cannot read the image at byte {offset}")]
    Reading {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("the {compression} cluster at guest byte {guest_offset} does not decompress: {reason}")]
    Decompressing {
        compression: Compression,
        guest_offset: u64,
        reason: String,
    },
    #[error(
        "read of {len_bytes} bytes at byte {offset} is past the virtual disk ({size_bytes} bytes)"
    )]
    PastEnd {
        offset: u64,
        len_bytes: u64,
        size_bytes: u64,
    },
}

/// The header facts a reader (or a person) wants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Qcow2Info {
    pub version: u32,
    pub cluster_bits: u32,
    pub cluster_size_bytes: u64,
    pub virtual_size_bytes: u64,
    /// How compressed clusters are stored (zlib also for images without any).
    pub compression: Compression,
    pub l1_entries: u64,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub refcount_bits: u32,
    pub incompatible_features: u64,
    pub file_size_bytes: u64,
}

impl Qcow2Info {
    /// Parses and checks the header; `file_size_bytes` bounds the tables.
    pub fn parse(header: &[u8], file_size_bytes: u64) -> Result<Qcow2Info, ReadError> {
        let be32 = |at: usize| {
            header
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        };
        let be64 = |at: usize| {
            header
                .get(at..at + 8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
        };
        if be32(0) != Some(MAGIC) {
            return Err(ReadError::NotQcow2);
        }
        let truncated = || ReadError::Truncated {
            what: "header",
            offset: 0,
            len_bytes: V2_HEADER_BYTES as u64,
            file_size_bytes,
        };
        let version = be32(4).ok_or_else(truncated)?;
        if !(2..=3).contains(&version) {
            return Err(ReadError::UnsupportedVersion { version });
        }
        if header.len() < V2_HEADER_BYTES {
            return Err(truncated());
        }
        let field32 = |at| be32(at).expect("inside the v2 header");
        let field64 = |at| be64(at).expect("inside the v2 header");
        let cluster_bits = field32(20);
        let cluster_size_bytes = 1u64.checked_shl(cluster_bits).unwrap_or(0);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_SIZE.trailing_zeros()).contains(&cluster_bits) {
            return Err(ReadError::BadHeader {
                reason: format!("cluster_bits {cluster_bits} is outside 9..=21"),
            });
        }
        let method = field32(32);
        if method != 0 {
            return Err(ReadError::Encrypted { method });
        }
        let (incompatible_features, refcount_order, compression) = if version == 3 {
            let header_length = field32(100) as usize;
            let byte = if header_length > 104 {
                header.get(104).copied()
            } else {
                Some(0)
            };
            let compression = match byte {
                Some(compression_type::ZLIB) => Compression::Zlib,
                Some(compression_type::ZSTD) => Compression::Zstd,
                Some(other) => {
                    return Err(ReadError::BadHeader {
                        reason: format!("unknown compression type {other}"),
                    });
                }
                None => return Err(truncated()),
            };
            (field64(72), field32(96), compression)
        } else {
            (0, 4, Compression::Zlib)
        };
        let unknown = incompatible_features & !KNOWN_INCOMPATIBLE;
        if unknown != 0 {
            return Err(ReadError::UnsupportedFeatures { bits: unknown });
        }
        let info = Qcow2Info {
            version,
            cluster_bits,
            cluster_size_bytes,
            virtual_size_bytes: field64(24),
            compression,
            l1_entries: u64::from(field32(36)),
            l1_table_offset: field64(40),
            refcount_table_offset: field64(48),
            refcount_table_clusters: field32(56),
            refcount_bits: 1u32.checked_shl(refcount_order).unwrap_or(0),
            incompatible_features,
            file_size_bytes,
        };
        let needed_l1 = info
            .virtual_size_bytes
            .div_ceil(cluster_size_bytes)
            .div_ceil(cluster_size_bytes / ENTRY_BYTES);
        if info.l1_entries < needed_l1 {
            return Err(ReadError::BadHeader {
                reason: format!(
                    "{} L1 entries cannot map {} bytes",
                    info.l1_entries, info.virtual_size_bytes
                ),
            });
        }
        let tables = [
            (
                "L1 table",
                info.l1_table_offset,
                info.l1_entries * ENTRY_BYTES,
            ),
            (
                "refcount table",
                info.refcount_table_offset,
                u64::from(info.refcount_table_clusters) * cluster_size_bytes,
            ),
        ];
        for (what, offset, len_bytes) in tables {
            if offset.saturating_add(len_bytes) > file_size_bytes {
                return Err(ReadError::Truncated {
                    what,
                    offset,
                    len_bytes,
                    file_size_bytes,
                });
            }
        }
        Ok(info)
    }
}

/// The guest's view of a qcow2 image, also as `Read + Seek`.
pub struct Qcow2Reader<R> {
    inner: R,
    info: Qcow2Info,
    l1: Vec<u64>,
    /// The L2 table last used: its host offset and entries.
    l2: Option<(u64, Vec<u64>)>,
    /// The compressed cluster last decoded: its guest index and bytes.
    decoded: Option<(u64, Vec<u8>)>,
    compressed: Vec<u8>,
    /// Position for `Read` and `Seek`.
    position: u64,
}

impl<R: Read + Seek> Qcow2Reader<R> {
    /// Reads and checks the header and loads the L1 table.
    pub fn open(mut inner: R) -> Result<Self, ReadError> {
        let reading = |offset| move |source| ReadError::Reading { offset, source };
        let file_size_bytes = inner.seek(SeekFrom::End(0)).map_err(reading(0))?;
        let mut header = Vec::with_capacity(512);
        inner.seek(SeekFrom::Start(0)).map_err(reading(0))?;
        (&mut inner)
            .take(512)
            .read_to_end(&mut header)
            .map_err(reading(0))?;
        let info = Qcow2Info::parse(&header, file_size_bytes)?;
        let backing_offset = u64::from_be_bytes(header[8..16].try_into().unwrap());
        if backing_offset != 0 {
            let len = u32::from_be_bytes(header[16..20].try_into().unwrap()) as u64;
            let mut name = vec![0u8; len.min(1023) as usize];
            read_exact_at(
                &mut inner,
                &mut name,
                backing_offset,
                "backing file name",
                file_size_bytes,
            )?;
            return Err(ReadError::BackingFile {
                name: String::from_utf8_lossy(&name).into_owned(),
            });
        }
        let mut raw = vec![0u8; (info.l1_entries * ENTRY_BYTES) as usize];
        read_exact_at(
            &mut inner,
            &mut raw,
            info.l1_table_offset,
            "L1 table",
            file_size_bytes,
        )?;
        let l1 = raw
            .chunks_exact(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
            .collect();
        Ok(Qcow2Reader {
            inner,
            info,
            l1,
            l2: None,
            decoded: None,
            compressed: Vec::new(),
            position: 0,
        })
    }

    pub fn info(&self) -> &Qcow2Info {
        &self.info
    }

    /// The L1 table's raw entries (L2 table offsets and flags), for
    /// `osforge verify` to check every L2 table lies inside the file.
    pub fn l1_table(&self) -> &[u64] {
        &self.l1
    }

    /// Fills `buf` with the guest's bytes from `offset`.
    pub fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), ReadError> {
        let size_bytes = self.info.virtual_size_bytes;
        if offset.saturating_add(buf.len() as u64) > size_bytes {
            return Err(ReadError::PastEnd {
                offset,
                len_bytes: buf.len() as u64,
                size_bytes,
            });
        }
        let cluster = self.info.cluster_size_bytes;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = at % cluster;
            let n = ((cluster - within) as usize).min(buf.len() - done);
            self.read_in_cluster(at / cluster, within, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Reads `out.len()` bytes from byte `within` of guest cluster `index`.
    fn read_in_cluster(
        &mut self,
        index: u64,
        within: u64,
        out: &mut [u8],
    ) -> Result<(), ReadError> {
        let entry = self.l2_entry(index)?;
        let file_size_bytes = self.info.file_size_bytes;
        if entry & L2_COMPRESSED_BIT != 0 {
            let data = self.decode(index, entry)?;
            out.copy_from_slice(&data[within as usize..within as usize + out.len()]);
        } else if entry & L2_STANDARD_OFFSET_MASK == 0 || entry & L2_ZERO_FLAG != 0 {
            out.fill(0);
        } else {
            let host = (entry & L2_STANDARD_OFFSET_MASK) + within;
            read_exact_at(&mut self.inner, out, host, "data cluster", file_size_bytes)?;
        }
        Ok(())
    }

    /// The L2 entry of guest cluster `index`; 0 when unallocated.
    fn l2_entry(&mut self, index: u64) -> Result<u64, ReadError> {
        let per_table = self.info.cluster_size_bytes / ENTRY_BYTES;
        let l1_entry = self.l1[(index / per_table) as usize];
        let l2_offset = l1_entry & L1_TABLE_OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(0);
        }
        if self.l2.as_ref().is_none_or(|(at, _)| *at != l2_offset) {
            let mut raw = vec![0u8; self.info.cluster_size_bytes as usize];
            let file_size_bytes = self.info.file_size_bytes;
            read_exact_at(
                &mut self.inner,
                &mut raw,
                l2_offset,
                "L2 table",
                file_size_bytes,
            )?;
            let table = raw
                .chunks_exact(8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
                .collect();
            self.l2 = Some((l2_offset, table));
        }
        let (_, table) = self.l2.as_ref().expect("loaded above");
        Ok(table[(index % per_table) as usize])
    }

    /// Decompresses guest cluster `index`, or returns it from the cache.
    fn decode(&mut self, index: u64, entry: u64) -> Result<&[u8], ReadError> {
        if self.decoded.as_ref().is_none_or(|(at, _)| *at != index) {
            let (host, len) = compressed_extent(self.info.cluster_bits, entry);
            // The descriptor counts whole sectors; the last cluster of the
            // file may end inside its last sector.
            let len = len.min(self.info.file_size_bytes.saturating_sub(host));
            self.compressed.resize(len as usize, 0);
            let file_size_bytes = self.info.file_size_bytes;
            read_exact_at(
                &mut self.inner,
                &mut self.compressed,
                host,
                "compressed cluster",
                file_size_bytes,
            )?;
            let mut data = self
                .decoded
                .take()
                .map(|(_, v)| v)
                .unwrap_or_else(|| vec![0u8; self.info.cluster_size_bytes as usize]);
            decompress_cluster(self.info.compression, &self.compressed, &mut data).map_err(
                |reason| ReadError::Decompressing {
                    compression: self.info.compression,
                    guest_offset: index * self.info.cluster_size_bytes,
                    reason,
                },
            )?;
            self.decoded = Some((index, data));
        }
        Ok(&self.decoded.as_ref().expect("decoded above").1)
    }
}

/// Where a compressed cluster's data lies: host byte offset and the bytes
/// of whole sectors it touches from there, as qemu reads them.
pub(crate) fn compressed_extent(cluster_bits: u32, entry: u64) -> (u64, u64) {
    let x = compressed_offset_bits(cluster_bits);
    let host = entry & ((1 << x) - 1);
    let sectors = ((entry & !L2_COMPRESSED_BIT) >> x) + 1;
    let end = (host / SECTOR_BYTES + sectors) * SECTOR_BYTES;
    (host, end - host)
}

/// Decompresses one cluster from `src` (which may run past the data, up to
/// the end of its last sector) into the whole of `dst`, as qemu does: raw
/// inflate with a 4 KiB window, or one zstd frame.
pub(crate) fn decompress_cluster(
    compression: Compression,
    src: &[u8],
    dst: &mut [u8],
) -> Result<(), String> {
    let produced = match compression {
        Compression::Zstd => {
            let frame = zstd::zstd_safe::find_frame_compressed_size(src)
                .map_err(|code| zstd::zstd_safe::get_error_name(code).to_string())?;
            zstd::bulk::Decompressor::new()
                .and_then(|mut d| d.decompress_to_buffer(&src[..frame], dst))
                .map_err(|e| e.to_string())?
        }
        Compression::Zlib | Compression::None => {
            let mut inflate = zlib_rs::Inflate::new(false, DEFLATE_WINDOW_BITS as u8);
            inflate
                .decompress(src, dst, zlib_rs::InflateFlush::Finish)
                .map_err(|e| format!("{e:?}"))?;
            inflate.total_out() as usize
        }
    };
    if produced != dst.len() {
        return Err(format!("{produced} bytes instead of {}", dst.len()));
    }
    Ok(())
}

fn read_exact_at<R: Read + Seek>(
    inner: &mut R,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
    file_size_bytes: u64,
) -> Result<(), ReadError> {
    if offset.saturating_add(buf.len() as u64) > file_size_bytes {
        return Err(ReadError::Truncated {
            what,
            offset,
            len_bytes: buf.len() as u64,
            file_size_bytes,
        });
    }
    inner
        .seek(SeekFrom::Start(offset))
        .and_then(|_| inner.read_exact(buf))
        .map_err(|source| ReadError::Reading { offset, source })
}

impl<R: Read + Seek> Read for Qcow2Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.info.virtual_size_bytes.saturating_sub(self.position);
        let n = (buf.len() as u64).min(left) as usize;
        self.read_exact_at(&mut buf[..n], self.position)
            .map_err(io::Error::other)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Qcow2Reader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.info.virtual_size_bytes.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the disk",
            )
        })?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    use crate::formats::qcow2::{CompositeDisk, Extent, ExtentData, Options, Qcow2Writer};

    fn image(disk: &[u8], compression: Compression) -> Vec<u8> {
        let source = CompositeDisk::new(
            disk.len() as u64,
            vec![Extent {
                offset_bytes: 0,
                data: ExtentData::Bytes(disk.to_vec()),
            }],
        )
        .unwrap();
        let mut out = Cursor::new(Vec::new());
        let opts = Options {
            compression,
            cluster_size_bytes: 4096,
            ..Options::default()
        };
        Qcow2Writer::new(opts)
            .unwrap()
            .write_disk(&source, &mut out)
            .unwrap();
        out.into_inner()
    }

    fn disk() -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        for (i, b) in d[5000..300_000].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        d[700_000..700_100].fill(7);
        d
    }

    #[test]
    fn reads_across_cluster_edges_match_the_disk_for_every_compression() {
        let d = disk();
        for compression in Compression::ALL {
            let mut r = Qcow2Reader::open(Cursor::new(image(&d, compression))).unwrap();
            assert_eq!(r.info().virtual_size_bytes, d.len() as u64);
            assert_eq!(r.info().cluster_size_bytes, 4096);
            let mut buf = vec![0u8; 10_000];
            r.read_exact_at(&mut buf, 4000).unwrap();
            assert_eq!(buf, d[4000..14_000], "{compression}");
            let mut all = Vec::new();
            r.seek(SeekFrom::Start(0)).unwrap();
            r.read_to_end(&mut all).unwrap();
            assert_eq!(all, d, "{compression}");
        }
    }

    #[test]
    fn a_truncated_image_names_the_table_past_the_end() {
        let mut bytes = image(&disk(), Compression::Zlib);
        bytes.truncate(bytes.len() / 2);
        let err = Qcow2Reader::open(Cursor::new(bytes)).err().unwrap();
        assert!(matches!(err, ReadError::Truncated { .. }), "{err}");
        assert!(
            err.to_string().contains("past the end of the file"),
            "{err}"
        );
    }

    #[test]
    fn other_files_and_reads_past_the_end_are_refused() {
        let err = Qcow2Reader::open(Cursor::new(vec![0u8; 4096]))
            .err()
            .unwrap();
        assert!(matches!(err, ReadError::NotQcow2), "{err}");
        let mut r = Qcow2Reader::open(Cursor::new(image(&disk(), Compression::None))).unwrap();
        let mut buf = [0u8; 2];
        assert!(matches!(
            r.read_exact_at(&mut buf, (1 << 20) - 1),
            Err(ReadError::PastEnd { .. })
        ));
    }
}
