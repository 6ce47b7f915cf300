//! Writer tests that read the image back with [`super::super::readback`].

use std::io::{self, Cursor};

use super::super::readback::read_image;
use super::super::source::{CompositeDisk, Extent, ExtentData};
use super::*;

/// A deterministic mix: text, noise, zero runs and repeated bytes.
fn mixed_disk(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut disk = vec![0u8; len];
    for (i, chunk) in disk.chunks_mut(5000).enumerate() {
        match i % 5 {
            0 => {
                let line = format!("line {i}: the quick brown fox jumps over the lazy dog\n");
                for (b, s) in chunk.iter_mut().zip(line.bytes().cycle()) {
                    *b = s;
                }
            }
            1 => chunk.iter_mut().for_each(|b| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }),
            2 => {} // zeros
            3 => chunk.fill(0xa5),
            _ => chunk[..100].fill(1),
        }
    }
    // A long zero run: whole clusters that must not be allocated.
    let hole = len / 3..len / 3 + len / 4;
    disk[hole].fill(0);
    disk
}

fn bytes_disk(bytes: &[u8]) -> CompositeDisk {
    let extent = Extent {
        offset_bytes: 0,
        data: ExtentData::Bytes(bytes.to_vec()),
    };
    CompositeDisk::new(bytes.len() as u64, vec![extent]).unwrap()
}

fn options(compression: Compression, cluster_size_bytes: u32, jobs: usize) -> Options {
    Options {
        cluster_size_bytes,
        compression,
        level: None,
        jobs,
        block_cache: None,
    }
}

fn write(disk: &dyn DiskSource, opts: Options) -> (Vec<u8>, Summary) {
    let mut out = Cursor::new(Vec::new());
    let summary = Qcow2Writer::new(opts)
        .unwrap()
        .write_disk(disk, &mut out)
        .unwrap();
    (out.into_inner(), summary)
}

#[test]
fn every_compression_and_cluster_size_reads_back_identically() {
    let raw = mixed_disk(3_000_000 + 123);
    let disk = bytes_disk(&raw);
    for compression in Compression::ALL {
        for cluster in [4096, 65536, 2 << 20] {
            let (image, summary) = write(&disk, options(compression, cluster, 2));
            let mut expected = raw.clone();
            expected.resize(raw.len().next_multiple_of(512), 0);
            assert_eq!(read_image(&image), expected, "{compression} {cluster}");
            assert_eq!(summary.file_size_bytes, image.len() as u64);
            assert_eq!(
                summary.virtual_size_bytes, 3_000_320,
                "rounded up to sectors"
            );
            assert_eq!(summary.input_bytes, 3_000_123);
            if compression == Compression::None {
                assert_eq!(summary.compressed_clusters, 0);
            } else {
                assert!(summary.compressed_clusters > 0, "{compression} {cluster}");
            }
            if cluster < 2 << 20 {
                assert!(summary.zero_clusters > 0, "the zero run is not allocated");
            }
        }
    }
}

#[test]
fn the_image_does_not_depend_on_the_number_of_jobs() {
    let raw = mixed_disk(2_000_000);
    let disk = bytes_disk(&raw);
    for compression in [Compression::Zlib, Compression::Zstd] {
        let (one, _) = write(&disk, options(compression, 4096, 1));
        let (four, _) = write(&disk, options(compression, 4096, 4));
        assert!(one == four, "{compression}: jobs 1 and 4 differ");
    }
}

#[test]
fn a_stream_gives_the_same_image_as_the_same_bytes_on_disk() {
    let raw = mixed_disk(1_500_000);
    let (from_disk, disk_summary) = write(&bytes_disk(&raw), options(Compression::Zstd, 65536, 2));
    let mut out = Cursor::new(Vec::new());
    let writer = Qcow2Writer::new(options(Compression::Zstd, 65536, 2)).unwrap();
    let stream_summary = writer
        .write_stream(&mut Cursor::new(raw.clone()), &mut out)
        .unwrap();
    assert!(out.into_inner() == from_disk);
    assert_eq!(stream_summary, disk_summary);
}

#[test]
fn holes_between_extents_are_neither_read_nor_allocated() {
    // 64 MiB disk, data only at the start and near the end.
    let disk = CompositeDisk::new(
        64 << 20,
        vec![
            Extent {
                offset_bytes: 0,
                data: ExtentData::Bytes(vec![0x11; 1000]),
            },
            Extent {
                offset_bytes: (64 << 20) - 70_000,
                data: ExtentData::Bytes(vec![0x22; 70_000]),
            },
        ],
    )
    .unwrap();
    let (image, summary) = write(&disk, options(Compression::None, 65536, 2));
    assert_eq!(summary.allocated_clusters, 1 + 2, "first cluster, last two");
    assert_eq!(summary.zero_clusters, 1024 - 3);
    assert_eq!(summary.l2_tables, 1);
    let back = read_image(&image);
    assert!(back[..1000].iter().all(|&b| b == 0x11));
    assert!(back[1000..(64 << 20) - 70_000].iter().all(|&b| b == 0));
    assert!(back[(64 << 20) - 70_000..].iter().all(|&b| b == 0x22));
}

#[test]
fn an_empty_stream_makes_a_valid_empty_image() {
    let mut out = Cursor::new(Vec::new());
    let summary = Qcow2Writer::new(Options::default())
        .unwrap()
        .write_stream(&mut std::io::empty(), &mut out)
        .unwrap();
    assert_eq!(summary.virtual_size_bytes, 0);
    assert_eq!(summary.allocated_clusters, 0);
    assert!(read_image(&out.into_inner()).is_empty());
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let bad = |opts: Options| Qcow2Writer::new(opts).err().unwrap().to_string();
    assert!(bad(options(Compression::None, 3000, 1)).contains("not a power of two"));
    assert!(bad(options(Compression::None, 1 << 22, 1)).contains("from 4K to 2M"));
    let mut opts = options(Compression::Zlib, 65536, 1);
    opts.level = Some(12);
    assert!(bad(opts).contains("expected 1..=9"));
    let mut opts = options(Compression::None, 65536, 1);
    opts.level = Some(3);
    assert!(bad(opts).contains("has no levels"));
}

#[test]
fn read_errors_name_the_offset_that_failed() {
    struct Failing;
    impl DiskSource for Failing {
        fn len_bytes(&self) -> u64 {
            1 << 20
        }
        fn read_at(&self, _: &mut [u8], offset: u64) -> io::Result<()> {
            if offset >= 512 << 10 {
                Err(io::Error::other("medium error"))
            } else {
                Ok(())
            }
        }
        fn data_ranges(&self) -> io::Result<Vec<std::ops::Range<u64>>> {
            Ok(std::iter::once(0..1 << 20).collect())
        }
    }
    let err = Qcow2Writer::new(options(Compression::Zlib, 65536, 2))
        .unwrap()
        .write_disk(&Failing, Cursor::new(Vec::new()))
        .unwrap_err();
    assert!(
        matches!(err, Error::ReadingSource { offset: 524288, .. }),
        "{err}"
    );
    assert_eq!(io_kind(&err), Some(io::ErrorKind::Other));
}

#[test]
fn write_errors_stop_the_pipeline_and_are_reported() {
    /// Accepts 200 KiB, then reports a full disk.
    struct Full(Cursor<Vec<u8>>);
    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0.position() + buf.len() as u64 > 200 << 10 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Full {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.0.seek(pos)
        }
    }
    let raw = mixed_disk(8 << 20);
    let err = Qcow2Writer::new(options(Compression::None, 4096, 2))
        .unwrap()
        .write_disk(&bytes_disk(&raw), Full(Cursor::new(Vec::new())))
        .unwrap_err();
    assert_eq!(io_kind(&err), Some(io::ErrorKind::StorageFull), "{err}");
}

/// An I/O error's kind, to check errors without matching on their text.
fn io_kind(err: &Error) -> Option<io::ErrorKind> {
    match err {
        Error::Writing(e) | Error::ReadingSource { source: e, .. } => Some(e.kind()),
        _ => None,
    }
}
