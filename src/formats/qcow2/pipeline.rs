//! Guest clusters read, compressed in parallel, and handed back in guest order.
//!
//! ```text
//!  reader thread: data ranges → clusters → skip all-zero ones ──► jobs (seq)
//!  N workers: compress each cluster on its own ───────────────────► done
//!  calling thread: reorders by seq, hands each cluster to the sink, returns
//!                  its buffers to the pool
//! ```
//!
//! Only the reader numbers the clusters, and the sink sees them in that order,
//! so the image is the same whatever the number of workers. Memory is bounded
//! by a fixed pool of cluster buffers: the reader needs one to read a cluster
//! and gets it back only once the sink has written it. When one side stops (an
//! error), the others see their channel close and stop too.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Range;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::Error;
use super::codec::Codec;
use super::source::DiskSource;
use crate::formats::Progress;

/// Cluster buffers per worker: one being compressed, one waiting, and slack
/// for the reorder window. With a warm block cache one cluster may cost 20
/// times another (compressed whole, or found whole), and with 2 per worker
/// the others soon waited on the slow one.
const BUFFERS_PER_WORKER: usize = 8;
/// Extra buffers for the reader and the sink.
const EXTRA_BUFFERS: usize = 2;

/// Where the guest clusters come from.
pub(crate) enum Feed<'a> {
    Disk(&'a dyn DiskSource),
    /// Read sequentially to EOF; the disk is as long as the stream.
    Stream(&'a mut (dyn Read + Send)),
}

/// One allocated guest cluster as it is to be stored.
pub(crate) enum Stored<'a> {
    /// The whole cluster, uncompressed.
    Standard(&'a [u8]),
    /// The compressed bytes (shorter than a cluster).
    Compressed(&'a [u8]),
}

struct Buffers {
    cluster: Vec<u8>,
    compressed: Vec<u8>,
}

struct Job {
    seq: u64,
    guest_cluster: u64,
    buffers: Buffers,
}

struct Done {
    job: Job,
    /// The compressed length (None: store the cluster as it is), or Err when
    /// the compressor panicked.
    compressed_len: Result<Option<usize>, ()>,
}

/// Runs the pipeline; `sink(guest_cluster, stored)` is called in guest order for
/// every cluster that is not all zeros. Returns the disk's length in bytes.
pub(crate) fn run(
    feed: Feed<'_>,
    cluster_bits: u32,
    codecs: Vec<Codec>,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(u64, Stored<'_>) -> Result<(), Error>,
) -> Result<u64, Error> {
    let pool_size = codecs.len() * BUFFERS_PER_WORKER + EXTRA_BUFFERS;
    let (pool_tx, pool_rx) = bounded::<Buffers>(pool_size);
    for _ in 0..pool_size {
        let buffers = Buffers {
            cluster: vec![0; 1 << cluster_bits],
            compressed: Vec::new(),
        };
        pool_tx
            .send(buffers)
            .expect("the pool has room for all its buffers");
    }
    let (jobs_tx, jobs_rx) = bounded::<Job>(pool_size);
    let (done_tx, done_rx) = unbounded::<Done>();

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut reader = ClusterReader {
                cluster_bits,
                pool: pool_rx,
                jobs: jobs_tx,
                spare: None,
                next_seq: 0,
                progress,
            };
            match feed {
                Feed::Disk(disk) => reader.read_disk(disk),
                Feed::Stream(stream) => reader.read_stream(stream),
            }
        });
        let workers: Vec<_> = codecs
            .into_iter()
            .map(|codec| {
                let jobs = jobs_rx.clone();
                let done = done_tx.clone();
                scope.spawn(move || compress_clusters(codec, jobs, done))
            })
            .collect();
        drop((jobs_rx, done_tx));

        let written = write_in_order(done_rx, pool_tx, sink);
        let read = reader.join().unwrap_or(Err(Error::PipelineStopped));
        let workers_ok = workers.into_iter().all(|w| w.join().is_ok());
        match (read, written) {
            // The reader stopped because the sink failed: report the sink's error.
            (Err(Error::PipelineStopped), Err(w)) => Err(w),
            (Err(r), _) => Err(r),
            (Ok(_), Err(w)) => Err(w),
            (Ok(_), Ok(())) if !workers_ok => Err(Error::PipelineStopped),
            (Ok(len), Ok(())) => Ok(len),
        }
    })
}

struct ClusterReader<'p> {
    cluster_bits: u32,
    pool: Receiver<Buffers>,
    jobs: Sender<Job>,
    /// A buffer that held an all-zero cluster, ready for the next one.
    spare: Option<Buffers>,
    next_seq: u64,
    progress: &'p dyn Progress,
}

impl ClusterReader<'_> {
    fn buffers(&mut self) -> Result<Buffers, Error> {
        match self.spare.take() {
            Some(b) => Ok(b),
            None => self.pool.recv().map_err(|_| Error::PipelineStopped),
        }
    }

    /// Queues a filled cluster, or keeps the buffer when the cluster is all zeros.
    fn dispatch(&mut self, guest_cluster: u64, buffers: Buffers) -> Result<(), Error> {
        if is_zero(&buffers.cluster) {
            self.spare = Some(buffers);
            return Ok(());
        }
        let job = Job {
            seq: self.next_seq,
            guest_cluster,
            buffers,
        };
        self.next_seq += 1;
        self.jobs.send(job).map_err(|_| Error::PipelineStopped)
    }

    fn read_disk(&mut self, disk: &dyn DiskSource) -> Result<u64, Error> {
        let len = disk.len_bytes();
        let cluster_bytes = 1u64 << self.cluster_bits;
        let mut ranges = disk.data_ranges().map_err(Error::FindingDataRanges)?;
        ranges.sort_by_key(|r| r.start);
        let mut next_cluster = 0;
        let mut reported = 0;
        for Range { start, end } in ranges {
            let end = end.min(len);
            if start >= end {
                continue;
            }
            // Ranges may share a cluster; each cluster is read once.
            let first = (start >> self.cluster_bits).max(next_cluster);
            let last = (end - 1) >> self.cluster_bits;
            for guest_cluster in first..=last {
                let mut buffers = self.buffers()?;
                let offset = guest_cluster << self.cluster_bits;
                let n = cluster_bytes.min(len - offset) as usize;
                // The last cluster of a disk that is not a whole number of
                // clusters reads as zeros past the end (qemu pads it too).
                buffers.cluster[n..].fill(0);
                disk.read_at(&mut buffers.cluster[..n], offset)
                    .map_err(|source| Error::ReadingSource { offset, source })?;
                self.progress.advance(offset + n as u64 - reported);
                reported = offset + n as u64;
                self.dispatch(guest_cluster, buffers)?;
            }
            next_cluster = next_cluster.max(last + 1);
        }
        self.progress.advance(len - reported);
        Ok(len)
    }

    fn read_stream(&mut self, stream: &mut dyn Read) -> Result<u64, Error> {
        let mut len = 0u64;
        loop {
            let mut buffers = self.buffers()?;
            let n =
                read_full(stream, &mut buffers.cluster).map_err(|source| Error::ReadingSource {
                    offset: len,
                    source,
                })?;
            if n == 0 {
                break;
            }
            buffers.cluster[n..].fill(0);
            let at_eof = n < buffers.cluster.len();
            let guest_cluster = len >> self.cluster_bits;
            len += n as u64;
            self.progress.advance(n as u64);
            self.dispatch(guest_cluster, buffers)?;
            if at_eof {
                break;
            }
        }
        Ok(len)
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(stream: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn compress_clusters(mut codec: Codec, jobs: Receiver<Job>, done: Sender<Done>) {
    for mut job in jobs {
        let buffers = &mut job.buffers;
        // A panicking encoder must not leave the sink waiting for this cluster
        // (the pipeline would stall with every buffer held): it is reported in
        // sequence like any result, and this worker stops.
        let compressed_len = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            codec.compress(&buffers.cluster, &mut buffers.compressed)
        }))
        .map_err(|_| ());
        let failed = compressed_len.is_err();
        let item = Done {
            job,
            compressed_len,
        };
        if done.send(item).is_err() || failed {
            return;
        }
    }
}

fn write_in_order(
    done: Receiver<Done>,
    pool: Sender<Buffers>,
    sink: &mut dyn FnMut(u64, Stored<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut waiting = BTreeMap::new();
    let mut next_seq = 0;
    for item in done {
        waiting.insert(item.job.seq, item);
        while let Some(Done {
            job,
            compressed_len,
        }) = waiting.remove(&next_seq)
        {
            let guest_cluster = job.guest_cluster;
            let stored = match compressed_len {
                Ok(Some(n)) => Stored::Compressed(&job.buffers.compressed[..n]),
                Ok(None) => Stored::Standard(&job.buffers.cluster),
                Err(()) => return Err(Error::CompressorFailed { guest_cluster }),
            };
            sink(guest_cluster, stored)?;
            next_seq += 1;
            // The reader may have finished and gone: then nobody needs it back.
            let _ = pool.send(job.buffers);
        }
    }
    Ok(())
}

/// True when every byte is zero. Folding 64-byte chunks lets the compiler
/// vectorise the test and stop at the first non-zero chunk.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}
