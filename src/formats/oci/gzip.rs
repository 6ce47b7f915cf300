//! gzip for layers: a parallel encoder whose bytes do not depend on the
//! number of threads, and a streaming decoder.
//!
//! The encoder follows pigz: the input is cut into [`CHUNK_BYTES`] chunks,
//! each deflated on its own with the previous chunk's last 32 KiB as its
//! dictionary and ended with a sync flush (an empty stored block, so the
//! chunk's output ends on a byte boundary); the last chunk ends with the
//! final block instead. The raw outputs then concatenate into one deflate
//! stream. Chunking, dictionaries and level are fixed, so one worker
//! (compressing inline, no threads) and eight give the same bytes.
//!
//! ```text
//!  caller: write() ─► CRC-32, length; 1 MiB chunks (seq, input, dict) ──► N workers: deflate
//!  caller: reorders the results by seq and writes them, bounded in flight ◄──┘
//! ```
//!
//! The header carries no name and no mtime and says OS 255 (unknown), as Go's
//! gzip writes it, so nothing of the host or the time gets in.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Method, Status};

/// Uncompressed bytes per independently deflated chunk: large enough that
/// the flush marker and the cold start cost nothing measurable.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;
/// Deflate's window: what a chunk may refer back to in the previous one.
const WINDOW_BYTES: usize = 32 << 10;
const WINDOW_BITS: i32 = 15;
/// zlib's default memory level (`deflateInit` uses it).
const MEM_LEVEL: i32 = 8;
/// gzip window bits for inflate: 15 plus 16 for the gzip wrapper.
const INFLATE_GZIP_BITS: u8 = 31;
/// Magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// Chunks queued or being compressed per worker.
const IN_FLIGHT_PER_WORKER: usize = 2;

struct Chunk {
    seq: u64,
    input: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

struct Compressed {
    seq: u64,
    /// Err: the encoder failed or panicked.
    output: Result<Vec<u8>, ()>,
}

enum Engine {
    Inline,
    Workers {
        jobs: Option<Sender<Chunk>>,
        done: Receiver<Compressed>,
        threads: Vec<JoinHandle<()>>,
        in_flight: usize,
        max_in_flight: usize,
        next_to_write: u64,
        waiting: BTreeMap<u64, Vec<u8>>,
    },
}

/// Writes a gzip stream to `out`; [`GzipWriter::finish`] ends it.
pub(crate) struct GzipWriter<W: Write> {
    /// Taken by [`GzipWriter::finish`].
    out: Option<W>,
    level: u32,
    engine: Engine,
    pending: Vec<u8>,
    /// The last [`WINDOW_BYTES`] of the previous chunk.
    window: Vec<u8>,
    next_seq: u64,
    crc: u32,
    input_bytes: u64,
}

fn new_deflate(level: u32) -> Box<Deflate> {
    Box::new(Deflate::new_with_config(DeflateConfig {
        level: level as i32,
        method: Method::Deflated,
        // Negative: raw deflate; the gzip wrapper is written here.
        window_bits: -WINDOW_BITS,
        mem_level: MEM_LEVEL,
        strategy: Default::default(),
    }))
}

fn stopped() -> io::Error {
    io::Error::other(super::Error::PipelineStopped)
}

/// Deflates one chunk. Not the last: ends with a sync flush, byte-aligned.
///
/// Each chunk gets a new encoder: `reset()` keeps the previous stream's
/// window, and the match finder reads a little past the input's end, so a
/// reused encoder's output would depend on which chunk it compressed before
/// (that is, on the thread schedule). A new one starts from a zeroed window.
fn deflate_chunk(level: u32, chunk: &Chunk) -> Result<Vec<u8>, ()> {
    let mut deflate = new_deflate(level);
    if !chunk.dict.is_empty() {
        deflate.set_dictionary(&chunk.dict).map_err(|_| ())?;
    }
    // zlib-rs 0.6.8 panics when the output runs out in its stored-block path
    // (see qcow2's codec): room for the worst case, plus the flush marker.
    let mut out = vec![0u8; zlib_rs::compress_bound(chunk.input.len()) + 64];
    let flush = if chunk.last {
        DeflateFlush::Finish
    } else {
        DeflateFlush::SyncFlush
    };
    let status = deflate
        .compress(&chunk.input, &mut out, flush)
        .map_err(|_| ())?;
    let complete = deflate.total_in() == chunk.input.len() as u64
        && (status == Status::StreamEnd) == chunk.last;
    if !complete {
        return Err(());
    }
    out.truncate(deflate.total_out() as usize);
    Ok(out)
}

fn worker(level: u32, jobs: Receiver<Chunk>, done: Sender<Compressed>) {
    for chunk in jobs {
        // A panicking encoder must not leave the caller waiting for this
        // chunk: it is reported like any result, and this worker stops.
        let output = std::panic::catch_unwind(|| deflate_chunk(level, &chunk)).unwrap_or(Err(()));
        let failed = output.is_err();
        if done
            .send(Compressed {
                seq: chunk.seq,
                output,
            })
            .is_err()
            || failed
        {
            return;
        }
    }
}

impl<W: Write> GzipWriter<W> {
    /// `level` 1..=9 (checked by the caller); `jobs` worker threads, 1 for
    /// compressing on the calling thread.
    pub fn new(mut out: W, level: u32, jobs: usize) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        let engine = if jobs <= 1 {
            Engine::Inline
        } else {
            let max_in_flight = jobs * IN_FLIGHT_PER_WORKER;
            let (jobs_tx, jobs_rx) = bounded::<Chunk>(max_in_flight);
            let (done_tx, done_rx) = unbounded::<Compressed>();
            let threads = (0..jobs)
                .map(|_| {
                    let (rx, tx) = (jobs_rx.clone(), done_tx.clone());
                    std::thread::spawn(move || worker(level, rx, tx))
                })
                .collect();
            Engine::Workers {
                jobs: Some(jobs_tx),
                done: done_rx,
                threads,
                in_flight: 0,
                max_in_flight,
                next_to_write: 0,
                waiting: BTreeMap::new(),
            }
        };
        Ok(GzipWriter {
            out: Some(out),
            level,
            engine,
            pending: Vec::with_capacity(CHUNK_BYTES),
            window: Vec::new(),
            next_seq: 0,
            crc: 0,
            input_bytes: 0,
        })
    }

    fn out(&mut self) -> &mut W {
        self.out.as_mut().expect("present until finish")
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK_BYTES));
        let dict = std::mem::replace(
            &mut self.window,
            input[input.len().saturating_sub(WINDOW_BYTES)..].to_vec(),
        );
        let chunk = Chunk {
            seq: self.next_seq,
            input,
            dict,
            last,
        };
        self.next_seq += 1;
        match &mut self.engine {
            Engine::Inline => {
                let output = deflate_chunk(self.level, &chunk).map_err(|_| stopped())?;
                self.out().write_all(&output)
            }
            Engine::Workers {
                jobs, in_flight, ..
            } => {
                let jobs = jobs.as_ref().expect("open until finish");
                jobs.send(chunk).map_err(|_| stopped())?;
                *in_flight += 1;
                self.write_ready(false)
            }
        }
    }

    /// Writes the results that are next in order; with `all`, waits for
    /// every chunk in flight, else only while too many are.
    fn write_ready(&mut self, all: bool) -> io::Result<()> {
        let Engine::Workers {
            done,
            in_flight,
            max_in_flight,
            next_to_write,
            waiting,
            ..
        } = &mut self.engine
        else {
            return Ok(());
        };
        let out = self.out.as_mut().expect("present until finish");
        loop {
            while let Some(output) = waiting.remove(next_to_write) {
                out.write_all(&output)?;
                *next_to_write += 1;
                *in_flight -= 1;
            }
            let must_wait = if all {
                *in_flight > 0
            } else {
                *in_flight >= *max_in_flight
            };
            let result = if must_wait {
                done.recv().map_err(|_| stopped())?
            } else {
                match done.try_recv() {
                    Ok(result) => result,
                    Err(_) => return Ok(()),
                }
            };
            waiting.insert(result.seq, result.output.map_err(|_| stopped())?);
        }
    }

    /// Ends the stream (last chunk, CRC-32 and length) and returns `out`.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        self.write_ready(true)?;
        let trailer = [
            self.crc.to_le_bytes(),
            (self.input_bytes as u32).to_le_bytes(),
        ];
        // ISIZE is the length modulo 2^32, by definition.
        self.out().write_all(trailer.as_flattened())?;
        self.shut_down();
        Ok(self.out.take().expect("present until finish"))
    }

    fn shut_down(&mut self) {
        if let Engine::Workers { jobs, threads, .. } = &mut self.engine {
            jobs.take();
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc = zlib_rs::crc32::crc32(self.crc, buf);
        self.input_bytes += buf.len() as u64;
        let mut rest = buf;
        while !rest.is_empty() {
            let take = (CHUNK_BYTES - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == CHUNK_BYTES {
                self.dispatch(false)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for GzipWriter<W> {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Reads a gzip stream (several members too, as pigz and Go's reader allow);
/// inflate checks each member's CRC-32 and length.
pub(crate) struct GzipReader<R> {
    inner: R,
    inflate: Inflate,
    /// Between members: the end of the input here is the end of the stream.
    at_member_start: bool,
    done: bool,
}

impl<R: BufRead> GzipReader<R> {
    pub fn new(inner: R) -> Self {
        GzipReader {
            inner,
            inflate: Inflate::new(true, INFLATE_GZIP_BITS),
            at_member_start: true,
            done: false,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: BufRead> Read for GzipReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.done {
            let input = self.inner.fill_buf()?;
            if input.is_empty() {
                if self.at_member_start {
                    self.done = true;
                    break;
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the gzip stream ends early",
                ));
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(input, buf, InflateFlush::NoFlush)
                .map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {}", e.as_str()))
                })?;
            let consumed = (self.inflate.total_in() - in_before) as usize;
            let produced = (self.inflate.total_out() - out_before) as usize;
            self.inner.consume(consumed);
            self.at_member_start = false;
            if status == Status::StreamEnd {
                self.inflate = Inflate::new(true, INFLATE_GZIP_BITS);
                self.at_member_start = true;
            } else if consumed == 0 && produced == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "gzip: the stream makes no progress",
                ));
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compressible text with repeats that cross chunk boundaries.
    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let words: Vec<Vec<u8>> = (0..500)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("w{:x} ", x % 100_000).into_bytes()
            })
            .collect();
        words.iter().flatten().copied().cycle().take(len).collect()
    }

    fn gzip(data: &[u8], jobs: usize, write_size: usize) -> Vec<u8> {
        let mut w = GzipWriter::new(Vec::new(), 6, jobs).unwrap();
        for piece in data.chunks(write_size) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    /// Like a root filesystem's tar: text, then binary-looking data, then
    /// text again, in pieces of odd lengths across the chunks.
    fn mixed(len: usize) -> Vec<u8> {
        let text = sample(len);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        text.chunks(300_007)
            .enumerate()
            .flat_map(|(i, piece)| {
                if i % 3 == 1 {
                    piece
                        .iter()
                        .map(|&b| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            b ^ (x as u8 & 0x0f)
                        })
                        .collect::<Vec<u8>>()
                } else {
                    piece.to_vec()
                }
            })
            .collect()
    }

    #[test]
    fn the_stream_is_the_same_whatever_the_number_of_workers() {
        let data = mixed(7 * CHUNK_BYTES + 12_345);
        let inline = gzip(&data, 1, 70_001);
        assert!(gzip(&data, 2, 4096) == inline, "2 workers differ");
        assert!(gzip(&data, 3, CHUNK_BYTES) == inline, "3 workers differ");
        assert!(inline.len() < data.len() / 2, "{} bytes", inline.len());
        assert_eq!(&inline[..10], &HEADER);
    }

    #[test]
    fn a_chunk_deflates_the_same_whatever_was_deflated_before() {
        let data = mixed(2 * CHUNK_BYTES);
        let chunk = |input: &[u8], dict: &[u8]| Chunk {
            seq: 0,
            input: input.to_vec(),
            dict: dict.to_vec(),
            last: false,
        };
        let (first, second) = data.split_at(CHUNK_BYTES);
        let dict = &first[CHUNK_BYTES - WINDOW_BYTES..];
        let alone = deflate_chunk(6, &chunk(second, dict)).unwrap();
        deflate_chunk(6, &chunk(first, b"")).unwrap();
        assert!(deflate_chunk(6, &chunk(second, dict)).unwrap() == alone);
    }

    #[test]
    fn libdeflate_and_our_reader_decode_it() {
        for len in [0, 1, CHUNK_BYTES, 2 * CHUNK_BYTES + 7] {
            let data = sample(len);
            let gz = gzip(&data, 3, 65_536);
            let mut out = vec![0u8; len];
            let n = libdeflater::Decompressor::new()
                .gzip_decompress(&gz, &mut out)
                .unwrap();
            assert_eq!((n, &out[..n]), (len, &data[..]), "libdeflate, {len} bytes");
            let mut back = Vec::new();
            GzipReader::new(&gz[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "GzipReader, {len} bytes");
        }
    }

    #[test]
    fn the_reader_takes_several_members_and_refuses_a_bad_crc() {
        let mut two = gzip(b"first ", 1, 100);
        two.extend(gzip(b"second", 1, 100));
        let mut back = Vec::new();
        GzipReader::new(&two[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, b"first second");

        let mut bad = gzip(b"some data", 1, 100);
        let crc_at = bad.len() - 8;
        bad[crc_at] ^= 1;
        let err = GzipReader::new(&bad[..])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

        let truncated = &gzip(b"some data", 1, 100)[..15];
        let err = GzipReader::new(truncated)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }
}
