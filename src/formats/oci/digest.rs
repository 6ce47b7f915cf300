//! Content addresses (`sha256:<hex>`) and the pass-through streams that
//! compute them while data flows: a blob is hashed as it is written or read,
//! never read twice for its digest.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

/// A sha256 digest: what osforge writes, and the only algorithm it reads
/// (every registry and tool uses it; a hex check also keeps a descriptor's
/// digest from naming a path outside `blobs/sha256/`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    pub const PREFIX: &'static str = "sha256:";

    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Accepts `sha256:` and 64 lower-case hex digits, as the spec requires.
    pub fn parse(text: &str) -> Option<Digest> {
        let hex = text.strip_prefix(Self::PREFIX)?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let nibble = |b: u8| if b <= b'9' { b - b'0' } else { b - b'a' + 10 };
            out[i] = nibble(pair[0]) << 4 | nibble(pair[1]);
        }
        Some(Digest(out))
    }

    /// The hex part: the blob's file name under `blobs/sha256/`.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Hashes and counts what passes through to `inner`.
pub(crate) struct HashingWriter<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the digest and the byte count of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest(self.sha.finalize().into()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts what is read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads what is left (so the digest covers the whole stream), then
    /// returns the inner reader, the digest and the byte count.
    pub fn finish(mut self) -> io::Result<(R, Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.inner, Digest(self.sha.finalize().into()), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_only_lower_case_sha256() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Digest::parse(empty), Some(Digest::of(b"")));
        assert_eq!(Digest::of(b"").to_string(), empty);
        assert_eq!(Digest::parse(&empty.to_uppercase()), None);
        assert_eq!(Digest::parse("sha512:00"), None);
        assert_eq!(Digest::parse("sha256:../../../etc/passwd"), None);
    }

    #[test]
    fn hashing_streams_digest_what_passes_through() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (out, digest, n) = w.finish();
        assert_eq!((digest, n), (Digest::of(b"hello world"), 11));
        let mut r = HashingReader::new(&out[..]);
        let mut first = [0u8; 3];
        r.read_exact(&mut first).unwrap();
        let (_, digest, n) = r.finish().unwrap();
        assert_eq!((digest, n), (Digest::of(b"hello world"), 11));
    }
}
