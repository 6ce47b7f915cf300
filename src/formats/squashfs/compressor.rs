//! Block compressors and their on-disk identities.
//!
//! Every data block, fragment block and 8 KiB metadata block is compressed on its
//! own. A block whose compressed form is not smaller is stored raw (the format has
//! a flag for it), so each call may answer "keep it uncompressed".
//!
//! gzip is libdeflate (zlib framing, as the kernel's zlib wrapper expects): at the
//! same level it is faster than zlib and no larger. xz is liblzma with the
//! dictionary the kernel preallocates when no options are stored:
//! max(block size, 8 KiB). lz4 is the raw block format, and the kernel insists on
//! its compressor-options record (version 1, "legacy").

use std::fmt;
use std::str::FromStr;

use super::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    Lz4,
}

impl Compression {
    pub const ALL: [Compression; 4] = [
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
        Compression::Lz4,
    ];

    /// The superblock's `compression_id`.
    pub(crate) fn id(self) -> u16 {
        match self {
            Compression::Gzip => 1,
            Compression::Xz => 4,
            Compression::Lz4 => 5,
            Compression::Zstd => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }

    /// mksquashfs's defaults, so images compare like for like.
    pub fn default_level(self) -> u32 {
        match self {
            Compression::Gzip => 9,
            Compression::Xz => 6,
            Compression::Zstd => 15,
            Compression::Lz4 => 0,
        }
    }

    /// Inclusive range of accepted `--level` values. lz4 is the fast raw-block
    /// encoder only, so it has a single level.
    pub fn level_range(self) -> (u32, u32) {
        match self {
            Compression::Gzip => (1, 12),
            Compression::Xz => (0, 9),
            Compression::Zstd => (1, 22),
            Compression::Lz4 => (0, 0),
        }
    }

    pub fn check_level(self, level: u32) -> Result<(), Error> {
        let (min, max) = self.level_range();
        if level < min || level > max {
            return Err(Error::BadLevel {
                compression: self,
                level,
                min,
                max,
            });
        }
        Ok(())
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
            .ok_or_else(|| format!("unknown compressor '{s}' (expected gzip, xz, zstd or lz4)"))
    }
}

/// Bumped when an encoder changes its output (a libdeflate, liblzma or lz4_flex
/// upgrade, a changed option), so block caches do not serve the old bytes.
const ENCODER_REVISION: u32 = 1;

/// Settings shared by every codec instance of one image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodecSettings {
    pub compression: Compression,
    pub level: u32,
    pub block_size: u32,
}

impl CodecSettings {
    fn xz_dict_size(&self) -> u32 {
        self.block_size.max(8192)
    }

    /// Names everything besides a block that shapes its compressed bytes,
    /// for the block cache: the compressor's settings, the zstd library (its
    /// output may change between releases), and the incompressible test.
    pub fn cache_namespace(&self) -> String {
        format!(
            "squashfs {} level {} block {} zstd {} incompressible {} rev {}",
            self.compression,
            self.level,
            self.block_size,
            zstd::zstd_safe::version_number(),
            crate::formats::incompressible::REVISION,
            ENCODER_REVISION,
        )
    }

    /// The compressor-options record written after the superblock, if any.
    /// Written when required (lz4) or when it records a non-default level in a
    /// form unsquashfs understands (as mksquashfs does).
    pub fn options_record(&self) -> Option<Vec<u8>> {
        match self.compression {
            // version 1 = LZ4_LEGACY, flags 0 = no high-compression mode
            Compression::Lz4 => Some([1u32.to_le_bytes(), 0u32.to_le_bytes()].concat()),
            Compression::Zstd if self.level != Compression::Zstd.default_level() => {
                Some(self.level.to_le_bytes().to_vec())
            }
            // gzip_comp_opts: level (1..=9 only), window bits 15, strategy 0
            Compression::Gzip
                if self.level != Compression::Gzip.default_level() && self.level <= 9 =>
            {
                let mut v = self.level.to_le_bytes().to_vec();
                v.extend_from_slice(&15u16.to_le_bytes());
                v.extend_from_slice(&0u16.to_le_bytes());
                Some(v)
            }
            _ => None,
        }
    }
}

enum State {
    Gzip(libdeflater::Compressor, libdeflater::Decompressor),
    Zstd(
        zstd::bulk::Compressor<'static>,
        zstd::bulk::Decompressor<'static>,
    ),
    Xz,
    Lz4,
}

/// One thread's compressor: contexts are reused across blocks.
pub(crate) struct Codec {
    settings: CodecSettings,
    state: State,
}

impl Codec {
    pub fn new(settings: CodecSettings) -> Result<Codec, Error> {
        let codec_err = |reason: String| Error::Codec {
            compression: settings.compression,
            reason,
        };
        let state = match settings.compression {
            Compression::Gzip => {
                let level = libdeflater::CompressionLvl::new(settings.level as i32)
                    .map_err(|e| codec_err(format!("{e:?}")))?;
                State::Gzip(
                    libdeflater::Compressor::new(level),
                    libdeflater::Decompressor::new(),
                )
            }
            Compression::Zstd => State::Zstd(
                zstd::bulk::Compressor::new(settings.level as i32)
                    .map_err(|e| codec_err(e.to_string()))?,
                zstd::bulk::Decompressor::new().map_err(|e| codec_err(e.to_string()))?,
            ),
            Compression::Xz => State::Xz,
            Compression::Lz4 => State::Lz4,
        };
        Ok(Codec { settings, state })
    }

    /// Compresses `input` into `out` (cleared first). Returns false when the
    /// result would not be smaller than the input: the caller stores it raw.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
        out.clear();
        if input.len() < 2 {
            return Ok(false);
        }
        let limit = input.len() - 1;
        let compression = self.settings.compression;
        let codec_err = |reason: String| Error::Codec {
            compression,
            reason,
        };
        match &mut self.state {
            State::Gzip(c, _) => {
                out.resize(limit, 0);
                match c.zlib_compress(input, out) {
                    Ok(n) => out.truncate(n),
                    Err(_) => return Ok(false), // only error is "does not fit"
                }
            }
            State::Zstd(c, _) => {
                out.reserve(limit);
                let mut bounded = BoundedVec { vec: out, limit };
                if c.compress_to_buffer(input, &mut bounded).is_err() {
                    // zstd's only failure here is dstSize_tooSmall
                    return Ok(false);
                }
            }
            State::Xz => {
                use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};
                let mut opts = LzmaOptions::new_preset(self.settings.level)
                    .map_err(|e| codec_err(e.to_string()))?;
                opts.dict_size(self.settings.xz_dict_size());
                let mut filters = Filters::new();
                filters.lzma2(&opts);
                // CRC32 is the check the kernel's xz decoder supports.
                let mut stream = Stream::new_stream_encoder(&filters, Check::Crc32)
                    .map_err(|e| codec_err(e.to_string()))?;
                out.reserve_exact(limit);
                let status = stream
                    .process_vec(input, out, Action::Finish)
                    .map_err(|e| codec_err(e.to_string()))?;
                if status != Status::StreamEnd || out.len() >= limit {
                    return Ok(false);
                }
            }
            State::Lz4 => {
                // lz4_flex refuses to start without room for the worst case.
                out.resize(lz4_flex::block::get_maximum_output_size(input.len()), 0);
                match lz4_flex::block::compress_into(input, out) {
                    Ok(n) => out.truncate(n),
                    Err(_) => return Ok(false),
                }
            }
        }
        Ok(out.len() < input.len())
    }

    /// Decompresses one block into `out`, which must be sized to the expected
    /// length; returns the number of bytes produced.
    pub fn decompress(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let compression = self.settings.compression;
        let codec_err = |reason: String| Error::Codec {
            compression,
            reason,
        };
        match &mut self.state {
            State::Gzip(_, d) => d
                .zlib_decompress(input, out)
                .map_err(|e| codec_err(format!("{e:?}"))),
            State::Zstd(_, d) => d
                .decompress_to_buffer(input, out)
                .map_err(|e| codec_err(e.to_string())),
            State::Xz => {
                use liblzma::stream::{Action, Status, Stream};
                let mut stream = Stream::new_stream_decoder(u64::MAX, 0)
                    .map_err(|e| codec_err(e.to_string()))?;
                let mut produced = Vec::with_capacity(out.len());
                let status = stream
                    .process_vec(input, &mut produced, Action::Finish)
                    .map_err(|e| codec_err(e.to_string()))?;
                if status != Status::StreamEnd {
                    return Err(codec_err("xz block does not fit the expected size".into()));
                }
                out[..produced.len()].copy_from_slice(&produced);
                Ok(produced.len())
            }
            State::Lz4 => {
                lz4_flex::block::decompress_into(input, out).map_err(|e| codec_err(e.to_string()))
            }
        }
    }
}

/// A `Vec` whose writable capacity zstd sees as at most `limit` bytes, so a
/// block that would not shrink fails fast instead of being compressed in full.
struct BoundedVec<'a> {
    vec: &'a mut Vec<u8>,
    limit: usize,
}

unsafe impl zstd::zstd_safe::WriteBuf for BoundedVec<'_> {
    fn as_slice(&self) -> &[u8] {
        self.vec.as_slice()
    }
    fn capacity(&self) -> usize {
        self.limit.min(self.vec.capacity())
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.vec.as_mut_ptr()
    }
    unsafe fn filled_until(&mut self, n: usize) {
        // SAFETY: zstd initialised the first n bytes, n <= capacity() <= vec.capacity().
        unsafe { self.vec.set_len(n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(compression: Compression) {
        let settings = CodecSettings {
            compression,
            level: compression.default_level(),
            block_size: 131072,
        };
        let mut codec = Codec::new(settings).unwrap();
        let text: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("line {}\n", i % 977).into_bytes())
            .collect();
        let mut out = Vec::new();
        assert!(
            codec.compress(&text, &mut out).unwrap(),
            "{compression}: text should shrink"
        );
        assert!(out.len() < text.len() / 2);
        let mut back = vec![0u8; text.len()];
        assert_eq!(codec.decompress(&out, &mut back).unwrap(), text.len());
        assert_eq!(back, text);
    }

    #[test]
    fn every_compressor_round_trips_a_block() {
        for c in Compression::ALL {
            roundtrip(c);
        }
    }

    #[test]
    fn incompressible_blocks_are_reported_for_raw_storage() {
        // xorshift noise does not compress
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for c in Compression::ALL {
            let settings = CodecSettings {
                compression: c,
                level: c.default_level(),
                block_size: 65536,
            };
            let mut out = Vec::new();
            assert!(
                !Codec::new(settings)
                    .unwrap()
                    .compress(&noise, &mut out)
                    .unwrap(),
                "{c}"
            );
        }
    }

    #[test]
    fn compressor_names_parse_and_unknown_ones_are_explained() {
        assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
        assert!(
            "lzo"
                .parse::<Compression>()
                .unwrap_err()
                .contains("expected gzip, xz, zstd or lz4")
        );
    }

    #[test]
    fn lz4_always_carries_its_options_record() {
        let s = CodecSettings {
            compression: Compression::Lz4,
            level: 0,
            block_size: 131072,
        };
        assert_eq!(s.options_record().unwrap(), vec![1, 0, 0, 0, 0, 0, 0, 0]);
        let z = CodecSettings {
            compression: Compression::Zstd,
            level: 15,
            block_size: 131072,
        };
        assert!(
            z.options_record().is_none(),
            "default zstd level needs no record"
        );
    }
}
