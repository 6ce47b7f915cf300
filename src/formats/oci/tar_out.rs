//! Tar members written as POSIX pax, the format Go's archive/tar (and so
//! containerd, skopeo and podman) and GNU tar all read: a ustar header,
//! preceded by a pax extended header when something does not fit in it
//! (long names and link targets, large ids, sizes and times) and for xattrs
//! (`SCHILY.xattr.NAME`, as GNU tar and the container tools write them).
//!
//! Names are written relative, without `./`, directories with a trailing
//! slash and the root as `./`, as `tar -C root .` would without the dot.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

pub(crate) const BLOCK_BYTES: u64 = 512;
const NAME_BYTES: usize = 100;
const PREFIX_BYTES: usize = 155;
/// Largest value of a 7-digit octal field (uid, gid, device numbers).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of an 11-digit octal field (size, mtime).
const MAX_OCTAL_11: u64 = 0o77777777777;
const COPY_BUFFER_BYTES: usize = 256 << 10;

/// One member as it is to be written, whatever it was read from.
pub(crate) struct Member<'a> {
    /// Normalised (see `names::normalize`); "" is the root.
    pub path: &'a [u8],
    pub kind: EntryType,
    /// A symlink's or hard link's target.
    pub link: &'a [u8],
    pub size: u64,
    /// Permission bits with setuid, setgid and sticky (07777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub device: (u32, u32),
    /// Owner names as another archive had them; osforge writes none.
    pub uname: &'a [u8],
    pub gname: &'a [u8],
    /// Further pax records, written as given (xattrs, sub-second times).
    pub pax: &'a [(Vec<u8>, Vec<u8>)],
}

/// A pax record: `<length> <key>=<value>\n`, the length counting itself.
pub(crate) fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let digits = |n: usize| n.to_string().len();
    let mut len = body + digits(body);
    if digits(len) != len - body {
        len += 1;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    debug_assert_eq!(out.len(), len);
    out
}

/// The member's name as written: directories end in a slash.
fn member_name(m: &Member<'_>) -> Vec<u8> {
    match (m.path.is_empty(), m.kind == EntryType::Directory) {
        (true, _) => b"./".to_vec(),
        (false, true) => [m.path, b"/"].concat(),
        (false, false) => m.path.to_vec(),
    }
}

/// Puts `name` into the ustar name (and prefix) fields; false when it does
/// not fit even split at a slash.
fn set_ustar_name(header: &mut Header, name: &[u8]) -> bool {
    let ustar = header.as_ustar_mut().expect("a ustar header");
    if name.len() <= NAME_BYTES {
        ustar.name[..name.len()].copy_from_slice(name);
        return true;
    }
    // The prefix is joined to the name with a slash that is not stored.
    let split = name.iter().enumerate().position(|(i, &b)| {
        b == b'/' && i <= PREFIX_BYTES && name.len() - i - 1 <= NAME_BYTES && i + 1 < name.len()
    });
    match split {
        Some(i) => {
            ustar.prefix[..i].copy_from_slice(&name[..i]);
            ustar.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
            true
        }
        None => false,
    }
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// The pax records of one member: those osforge adds, then the member's own.
struct PaxRecords<'a> {
    bytes: Vec<u8>,
    given: &'a [(Vec<u8>, Vec<u8>)],
}

impl PaxRecords<'_> {
    /// Adds a record unless the member brings its own for `key`.
    fn add(&mut self, key: &[u8], value: &[u8]) {
        if !self.given.iter().any(|(k, _)| k == key) {
            self.bytes.extend(pax_record(key, value));
        }
    }

    /// `value` when it fits in an octal field up to `max`; else a record
    /// holds it and the field gets 0, as Go's archive/tar does.
    fn fit(&mut self, key: &[u8], value: i64, max: u64) -> u64 {
        match u64::try_from(value) {
            Ok(v) if v <= max => v,
            _ => {
                self.add(key, value.to_string().as_bytes());
                0
            }
        }
    }
}

/// The ustar header and the pax records a member needs.
pub(crate) fn header_for(m: &Member<'_>) -> (Header, Vec<u8>) {
    let mut header = Header::new_ustar();
    let mut pax = PaxRecords {
        bytes: Vec::new(),
        given: m.pax,
    };
    let name = member_name(m);
    if !set_ustar_name(&mut header, &name) {
        pax.add(b"path", &name);
        set_ustar_name(&mut header, &name[..NAME_BYTES]);
    }
    header.set_entry_type(m.kind);
    {
        let ustar = header.as_ustar_mut().expect("a ustar header");
        if m.link.len() <= NAME_BYTES {
            copy_field(&mut ustar.linkname, m.link);
        } else {
            copy_field(&mut ustar.linkname, &m.link[..NAME_BYTES]);
            pax.add(b"linkpath", m.link);
        }
        copy_field(&mut ustar.uname, m.uname);
        copy_field(&mut ustar.gname, m.gname);
    }
    header.set_mode(m.mode & 0o7777);
    // Ids and sizes beyond i64 do not occur; saturate rather than wrap.
    let wide = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    header.set_uid(pax.fit(b"uid", wide(m.uid), MAX_OCTAL_7));
    header.set_gid(pax.fit(b"gid", wide(m.gid), MAX_OCTAL_7));
    header.set_size(pax.fit(b"size", wide(m.size), MAX_OCTAL_11));
    header.set_mtime(pax.fit(b"mtime", m.mtime, MAX_OCTAL_11));
    // Zeros for other members too, as GNU tar and Go write them (some
    // readers refuse empty fields). Linux majors are 12 bits and minors 20:
    // both fit in 7 octal digits.
    let _ = header.set_device_major(m.device.0);
    let _ = header.set_device_minor(m.device.1);
    let mut records = pax.bytes;
    for (key, value) in m.pax {
        records.extend(pax_record(key, value));
    }
    header.set_cksum();
    (header, records)
}

/// Writes members to `out`, counting bytes (so a caller can note where a
/// header goes and come back to it).
pub(crate) struct TarWriter<W: Write> {
    out: W,
    position: u64,
    buffer: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            position: 0,
            buffer: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes raw bytes that the caller accounts for as archive content.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    /// Notes `bytes` written to [`get_mut`](Self::get_mut) directly.
    pub fn advance(&mut self, bytes: u64) {
        self.position += bytes;
    }

    /// Zeros up to the next 512-byte boundary.
    pub fn pad(&mut self) -> io::Result<()> {
        let rem = (self.position % BLOCK_BYTES) as usize;
        if rem != 0 {
            self.write_raw(&[0u8; BLOCK_BYTES as usize][rem..])?;
        }
        Ok(())
    }

    /// Writes the pax header (when there are records) and `header`.
    pub fn write_headers(&mut self, header: &Header, pax: &[u8], name: &[u8]) -> io::Result<()> {
        if !pax.is_empty() {
            let mut x = Header::new_ustar();
            let base = name.rsplit(|&b| b == b'/').next().unwrap_or_default();
            // Go's name for it; no reader looks at it.
            let x_name = [&b"PaxHeaders.0/"[..], base].concat();
            set_ustar_name(&mut x, &x_name[..x_name.len().min(NAME_BYTES)]);
            x.set_entry_type(EntryType::XHeader);
            x.set_mode(0o644);
            x.set_size(pax.len() as u64);
            x.set_mtime(0);
            x.set_cksum();
            self.write_raw(x.as_bytes())?;
            self.write_raw(pax)?;
            self.pad()?;
        }
        self.write_raw(header.as_bytes())
    }

    /// Writes one member with exactly `m.size` bytes from `data`; data that
    /// ends early is an `UnexpectedEof` error (the archive is then unusable).
    pub fn append(&mut self, m: &Member<'_>, data: &mut dyn Read) -> io::Result<()> {
        let (header, pax) = header_for(m);
        self.write_headers(&header, &pax, m.path)?;
        if m.size > 0 {
            self.copy_exactly(data, m.size)?;
            self.pad()?;
        }
        Ok(())
    }

    fn copy_exactly(&mut self, data: &mut dyn Read, size: u64) -> io::Result<()> {
        self.buffer.resize(COPY_BUFFER_BYTES, 0);
        let mut left = size;
        while left > 0 {
            let want = left.min(COPY_BUFFER_BYTES as u64) as usize;
            let n = match data.read(&mut self.buffer[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the data ends {left} bytes before the member's size"),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&self.buffer[..n])?;
            self.position += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns `out`.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_raw(&[0u8; 2 * BLOCK_BYTES as usize])?;
        Ok(self.out)
    }
}

/// Notes whether reading failed, so that a read error and a write error,
/// which both come out of [`TarWriter::append`], are told apart.
pub(crate) struct NotingReader<R> {
    inner: R,
    pub failed: bool,
}

impl<R> NotingReader<R> {
    pub fn new(inner: R) -> Self {
        NotingReader {
            inner,
            failed: false,
        }
    }
}

impl<R: Read> Read for NotingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        self.failed |= result.is_err();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member<'a>(path: &'a [u8], link: &'a [u8], pax: &'a [(Vec<u8>, Vec<u8>)]) -> Member<'a> {
        Member {
            path,
            kind: if link.is_empty() {
                EntryType::Regular
            } else {
                EntryType::Symlink
            },
            link,
            size: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            device: (0, 0),
            uname: b"",
            gname: b"",
            pax,
        }
    }

    #[test]
    fn pax_record_lengths_count_their_own_digits() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n");
        // 98 bytes of body and 2 digits would be 100: 3 digits, 101.
        let v = vec![b'x'; 91];
        let r = pax_record(b"path", &v);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101 path="));
    }

    #[test]
    fn the_tar_crate_reads_back_long_names_ids_and_xattrs() {
        let long_dir = "d".repeat(120);
        let long_name = format!("{long_dir}/{}", "f".repeat(120));
        let target = "t".repeat(300);
        let xattrs = vec![(b"SCHILY.xattr.user.k".to_vec(), vec![0u8, 1, 255])];
        let mut w = TarWriter::new(Vec::new());
        let mut split = member(b"", b"", &[]);
        let split_name = format!("{long_dir}/short");
        split.path = split_name.as_bytes();
        w.append(&split, &mut io::empty()).unwrap();
        let mut big = member(long_name.as_bytes(), b"", &xattrs);
        big.uid = 5_000_000;
        big.size = 3;
        w.append(&big, &mut &b"abc"[..]).unwrap();
        w.append(&member(b"link", target.as_bytes(), &[]), &mut io::empty())
            .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);

        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entries = archive.entries().unwrap();
        let e = entries.next().unwrap().unwrap();
        assert_eq!(e.path_bytes(), split_name.as_bytes());
        // Split into prefix and name: no pax header was needed.
        assert!(e.header().as_ustar().unwrap().prefix[0] != 0);
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path_bytes(), long_name.as_bytes());
        let pax: Vec<(Vec<u8>, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key_bytes().to_vec(), r.value_bytes().to_vec())
            })
            .collect();
        assert!(pax.contains(&(b"uid".to_vec(), b"5000000".to_vec())));
        assert!(pax.contains(&xattrs[0]));
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        assert_eq!(data, b"abc");
        let e = entries.next().unwrap().unwrap();
        assert_eq!(e.link_name_bytes().unwrap(), target.as_bytes());
        assert!(entries.next().is_none());
    }

    #[test]
    fn data_shorter_than_the_size_is_an_error() {
        let mut m = member(b"f", b"", &[]);
        m.size = 10;
        let err = TarWriter::new(Vec::new())
            .append(&m, &mut &b"abc"[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
