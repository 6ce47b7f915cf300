//! PE/COFF images as UEFI runs them (PE32+, x86-64): the section table,
//! the Authenticode signatures in the certificate table and who made them,
//! and new sections appended, which is how a unified kernel image is made
//! from the systemd stub (`.cmdline`, `.linux`, `.initrd`).
//!
//! ```text
//!  0x3c        offset of "PE\0\0"
//!  +4          COFF header: machine, number of sections, optional header size
//!  +24         optional header (0x20b: PE32+): alignments, SizeOfImage,
//!              SizeOfHeaders, data directories (#4: certificate table, by
//!              file offset, not RVA)
//!  then        section headers, 40 bytes each
//!  cert table  WIN_CERTIFICATE {length u32, revision u16, type u16 (2:
//!              PKCS#7 SignedData)}, 8-byte aligned, at the end of the file
//! ```

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a PE image: {0}")]
    NotPe(&'static str),
    #[error("not a PE32+ image (optional header magic {0:#x})")]
    NotPe32Plus(u16),
    #[error("the image is already signed; sections cannot be added to it")]
    AlreadySigned,
    #[error("no room for {wanted} more section headers in the image's headers")]
    NoRoomForSections { wanted: usize },
    #[error("section name '{0}' is longer than 8 bytes")]
    SectionName(String),
    #[error("malformed Authenticode signature: {0}")]
    BadSignature(&'static str),
}

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub virtual_size: u32,
    pub virtual_address: u32,
    pub raw_size: u32,
    pub raw_offset: u32,
}

/// What the headers say.
#[derive(Debug, Clone)]
pub struct Layout {
    pub sections: Vec<Section>,
    pub section_alignment: u32,
    pub file_alignment: u32,
    pub size_of_image: u32,
    pub size_of_headers: u32,
    /// The certificate table: file offset and size (0 when unsigned).
    pub cert_table: (u32, u32),
    coff: usize,
    optional: usize,
    section_table: usize,
}

/// A signature of the certificate table: the signer's certificate names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    /// The signing certificate's subject CN (or whole subject when it has no CN).
    pub subject: String,
    pub issuer: String,
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (issuer: {})", self.subject, self.issuer)
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, Error> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(Error::NotPe("truncated headers"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Error> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(Error::NotPe("truncated headers"))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Whether `bytes` starts like a PE image ("MZ" and a "PE\0\0" header).
pub fn is_pe(bytes: &[u8]) -> bool {
    parse(bytes).is_ok()
}

/// Reads the headers.
pub fn parse(b: &[u8]) -> Result<Layout, Error> {
    if b.get(..2) != Some(b"MZ") {
        return Err(Error::NotPe("no MZ signature"));
    }
    let pe = u32_at(b, 0x3c)? as usize;
    if b.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(Error::NotPe("no PE signature"));
    }
    let coff = pe + 4;
    let sections = u16_at(b, coff + 2)? as usize;
    let optional_size = u16_at(b, coff + 16)? as usize;
    let optional = coff + 20;
    let magic = u16_at(b, optional)?;
    if magic != 0x20b {
        return Err(Error::NotPe32Plus(magic));
    }
    let directories = u32_at(b, optional + 108)?;
    let cert_table = if directories > 4 {
        (
            u32_at(b, optional + 112 + 32)?,
            u32_at(b, optional + 116 + 32)?,
        )
    } else {
        (0, 0)
    };
    let section_table = optional + optional_size;
    let mut list = Vec::with_capacity(sections);
    for i in 0..sections {
        let at = section_table + 40 * i;
        let name = b
            .get(at..at + 8)
            .ok_or(Error::NotPe("truncated section table"))?;
        let name = String::from_utf8_lossy(name)
            .trim_end_matches('\0')
            .to_string();
        list.push(Section {
            name,
            virtual_size: u32_at(b, at + 8)?,
            virtual_address: u32_at(b, at + 12)?,
            raw_size: u32_at(b, at + 16)?,
            raw_offset: u32_at(b, at + 20)?,
        });
    }
    Ok(Layout {
        sections: list,
        section_alignment: u32_at(b, optional + 32)?,
        file_alignment: u32_at(b, optional + 36)?,
        size_of_image: u32_at(b, optional + 56)?,
        size_of_headers: u32_at(b, optional + 60)?,
        cert_table,
        coff,
        optional,
        section_table,
    })
}

fn align(v: u64, to: u32) -> u64 {
    v.next_multiple_of(u64::from(to.max(1)))
}

/// `image` with `sections` appended (initialised, read-only data), as
/// ukify does to the systemd stub. The image must be unsigned: a signature
/// would no longer match, so sign the result instead.
pub fn add_sections(image: &[u8], sections: &[(&str, &[u8])]) -> Result<Vec<u8>, Error> {
    let layout = parse(image)?;
    if layout.cert_table.1 != 0 {
        return Err(Error::AlreadySigned);
    }
    let first_data = layout
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| s.raw_offset as usize)
        .min()
        .unwrap_or(layout.size_of_headers as usize);
    let table_end = layout.section_table + 40 * (layout.sections.len() + sections.len());
    if table_end > (layout.size_of_headers as usize).min(first_data) {
        return Err(Error::NoRoomForSections {
            wanted: sections.len(),
        });
    }
    let mut out = image.to_vec();
    let mut next_va = layout
        .sections
        .iter()
        .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size)))
        .max()
        .unwrap_or(u64::from(layout.size_of_headers));
    let mut header_at = layout.section_table + 40 * layout.sections.len();
    let mut initialised = u64::from(u32_at(image, layout.optional + 8)?);
    for (name, data) in sections {
        if name.len() > 8 {
            return Err(Error::SectionName(name.to_string()));
        }
        next_va = align(next_va, layout.section_alignment);
        let raw_offset = align(out.len() as u64, layout.file_alignment);
        let raw_size = align(data.len() as u64, layout.file_alignment);
        let fits = |v: u64| u32::try_from(v).map_err(|_| Error::NotPe("image over 4 GiB"));
        out.resize(raw_offset as usize, 0);
        out.extend_from_slice(data);
        out.resize((raw_offset + raw_size) as usize, 0);
        let header = &mut out[header_at..header_at + 40];
        header.fill(0);
        header[..name.len()].copy_from_slice(name.as_bytes());
        put_u32(header, 8, fits(data.len() as u64)?);
        put_u32(header, 12, fits(next_va)?);
        put_u32(header, 16, fits(raw_size)?);
        put_u32(header, 20, fits(raw_offset)?);
        // IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
        put_u32(header, 36, 0x4000_0040);
        header_at += 40;
        next_va += data.len() as u64;
        initialised += raw_size;
    }
    let count = layout.sections.len() + sections.len();
    let count = u16::try_from(count).map_err(|_| Error::NotPe("too many sections"))?;
    out[layout.coff + 2..layout.coff + 4].copy_from_slice(&count.to_le_bytes());
    let size_of_image = align(next_va, layout.section_alignment);
    let size_of_image =
        u32::try_from(size_of_image).map_err(|_| Error::NotPe("image over 4 GiB"))?;
    put_u32(&mut out, layout.optional + 56, size_of_image);
    put_u32(
        &mut out,
        layout.optional + 8,
        u32::try_from(initialised).unwrap_or(u32::MAX),
    );
    // UEFI does not check it; a stale one would only mislead other tools.
    put_u32(&mut out, layout.optional + 64, 0);
    Ok(out)
}

/// The signers of every Authenticode signature in the certificate table;
/// empty for an unsigned image.
pub fn signers(image: &[u8]) -> Result<Vec<Signer>, Error> {
    let layout = parse(image)?;
    let (offset, size) = layout.cert_table;
    if size == 0 {
        return Ok(Vec::new());
    }
    let table = image
        .get(offset as usize..offset as usize + size as usize)
        .ok_or(Error::BadSignature("certificate table outside the file"))?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= table.len() {
        let length = u32_at(table, at)? as usize;
        let kind = u16_at(table, at + 6)?;
        if length < 8 || at + length > table.len() {
            return Err(Error::BadSignature("certificate entry length"));
        }
        // WIN_CERT_TYPE_PKCS_SIGNED_DATA; others (X.509 alone) name no signer.
        if kind == 2 {
            out.push(pkcs7_signer(&table[at + 8..at + length])?);
        }
        at += length.next_multiple_of(8);
    }
    Ok(out)
}

/// A DER element: tag, contents, and what follows it.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), Error> {
    let bad = Error::BadSignature("truncated DER");
    let (&tag, rest) = input
        .split_first()
        .ok_or(Error::BadSignature("empty DER"))?;
    let (&first, rest) = rest.split_first().ok_or(bad)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(Error::BadSignature("unsupported DER length"));
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(Error::BadSignature("truncated DER"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// One element of a SEQUENCE or SET.
struct Der<'a> {
    tag: u8,
    contents: &'a [u8],
    /// Tag and length too, for comparing names byte for byte.
    whole: &'a [u8],
}

/// The elements of a SEQUENCE or SET's contents.
fn children(mut input: &[u8]) -> Result<Vec<Der<'_>>, Error> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tag, contents, rest) = tlv(input)?;
        let whole = &input[..input.len() - rest.len()];
        out.push(Der {
            tag,
            contents,
            whole,
        });
        input = rest;
    }
    Ok(out)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
/// id-at-commonName, 2.5.4.3.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// The signer of a PKCS#7 SignedData: the certificate matching the first
/// SignerInfo's issuer and serial number.
fn pkcs7_signer(der: &[u8]) -> Result<Signer, Error> {
    let bad = Error::BadSignature;
    let (_, content_info, _) = tlv(der)?;
    let parts = children(content_info)?;
    let explicit = parts.get(1).ok_or(bad("no SignedData"))?;
    let (_, signed_data, _) = tlv(explicit.contents)?;
    let fields = children(signed_data)?;
    let certificates = fields
        .iter()
        .find(|f| f.tag == 0xa0)
        .ok_or(bad("no certificates"))?;
    let signer_infos = fields
        .iter()
        .rev()
        .find(|f| f.tag == SET)
        .ok_or(bad("no signer infos"))?;
    let info = children(signer_infos.contents)?;
    let info = info.first().ok_or(bad("no signer info"))?;
    let info = children(info.contents)?;
    let id = info
        .get(1)
        .filter(|f| f.tag == SEQUENCE)
        .ok_or(bad("signer id"))?;
    let id = children(id.contents)?;
    let (issuer, serial) = match id.as_slice() {
        [issuer, serial] if serial.tag == INTEGER => (issuer.whole, serial.contents),
        _ => return Err(bad("signer id")),
    };
    for cert in children(certificates.contents)? {
        let tbs = children(cert.contents)?;
        let tbs = tbs.first().ok_or(bad("certificate"))?;
        let mut fields = children(tbs.contents)?;
        if fields.first().is_some_and(|f| f.tag == 0xa0) {
            fields.remove(0); // [0] version
        }
        // serial, signature algorithm, issuer, validity, subject
        if fields.len() < 5 {
            return Err(bad("certificate fields"));
        }
        if fields[0].contents == serial && fields[2].whole == issuer {
            return Ok(Signer {
                subject: common_name(fields[4].contents)?,
                issuer: common_name(fields[2].contents)?,
            });
        }
    }
    Err(bad("the signer's certificate is not included"))
}

/// The CN of a Name (or its attributes' values joined when it has none).
fn common_name(name: &[u8]) -> Result<String, Error> {
    let mut values = Vec::new();
    for rdn in children(name)? {
        for attribute in children(rdn.contents)? {
            let parts = children(attribute.contents)?;
            if let [oid, value] = parts.as_slice() {
                let text = String::from_utf8_lossy(value.contents).into_owned();
                if oid.contents == CN_OID {
                    return Ok(text);
                }
                values.push(text);
            }
        }
    }
    Ok(values.join(", "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal PE32+ image: 1 KiB of headers (room for 15 section
    /// headers) and one `.text` section.
    pub(crate) fn tiny_pe() -> Vec<u8> {
        let mut b = vec![0u8; 0x600];
        b[..2].copy_from_slice(b"MZ");
        put_u32(&mut b, 0x3c, 0x80);
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        b[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        put_u32(&mut b, opt + 32, 0x1000);
        put_u32(&mut b, opt + 36, 0x200);
        put_u32(&mut b, opt + 56, 0x2000);
        put_u32(&mut b, opt + 60, 0x400);
        put_u32(&mut b, opt + 108, 16);
        let sec = opt + 240;
        b[sec..sec + 5].copy_from_slice(b".text");
        put_u32(&mut b, sec + 8, 0x100);
        put_u32(&mut b, sec + 12, 0x1000);
        put_u32(&mut b, sec + 16, 0x200);
        put_u32(&mut b, sec + 20, 0x400);
        b
    }

    #[test]
    fn added_sections_follow_the_last_one_aligned_and_read_back() {
        let image = tiny_pe();
        let out =
            add_sections(&image, &[(".cmdline", b"quiet"), (".linux", &[7u8; 5000])]).unwrap();
        let layout = parse(&out).unwrap();
        let names: Vec<&str> = layout.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [".text", ".cmdline", ".linux"]);
        let cmdline = &layout.sections[1];
        assert_eq!(cmdline.virtual_address, 0x2000);
        assert_eq!(cmdline.virtual_size, 5);
        assert_eq!(cmdline.raw_offset % 0x200, 0);
        let at = cmdline.raw_offset as usize;
        assert_eq!(&out[at..at + 5], b"quiet");
        let linux = &layout.sections[2];
        assert_eq!(linux.virtual_address, 0x3000);
        assert_eq!(linux.raw_size, 5120);
        assert_eq!(layout.size_of_image, 0x5000);
        assert_eq!(out.len() as u32, linux.raw_offset + linux.raw_size);
        assert!(signers(&out).unwrap().is_empty());
    }

    #[test]
    fn no_room_long_names_and_signed_images_are_refused() {
        let image = tiny_pe();
        let many: Vec<(&str, &[u8])> = vec![("a", b"x"); 15];
        assert!(matches!(
            add_sections(&image, &many),
            Err(Error::NoRoomForSections { wanted: 15 })
        ));
        assert!(add_sections(&image, &many[..14]).is_ok());
        assert!(matches!(
            add_sections(&image, &[(".toolongname", b"x")]),
            Err(Error::SectionName(_))
        ));
        let mut signed = image.clone();
        put_u32(&mut signed, 0x84 + 20 + 144, 0x400);
        put_u32(&mut signed, 0x84 + 20 + 148, 8);
        assert!(matches!(
            add_sections(&signed, &[("a", b"x")]),
            Err(Error::AlreadySigned)
        ));
        assert!(matches!(parse(b"MZ"), Err(Error::NotPe(_))));
    }
}
