//! GUIDs (UUIDs) as GPT and filesystems use them.
//!
//! A [`Guid`] keeps the 16 bytes in the order its text is written
//! (`C12A7328-F81F-11D2-BA4B-00A0C93EC93B` is `c1 2a 73 28 f8 1f ...`), which
//! is also how ext4 and the swap header store a UUID. GPT stores the first
//! three fields little-endian ("mixed-endian"); [`Guid::to_gpt_bytes`] does
//! that swap, so nothing else needs to know.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

/// Length of a GUID's text form, `8-4-4-4-12` hex digits with dashes.
const TEXT_LEN: usize = 36;
/// Where the dashes of the text form are.
const DASHES: [usize; 4] = [8, 13, 18, 23];
/// Byte 6 holds the version in its high nibble; byte 8 the variant bits.
const VERSION_BYTE: usize = 6;
const VARIANT_BYTE: usize = 8;
/// RFC 4122 version 4 ("random") and variant `10xx`.
const VERSION_4: u8 = 0x40;
const VARIANT_RFC4122: u8 = 0x80;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a GUID (expected 8-4-4-4-12 hex digits)")]
pub struct ParseGuidError {
    pub text: String,
}

impl Guid {
    pub const NIL: Guid = Guid([0; 16]);

    /// A version 4 GUID from the system's random source.
    pub fn random() -> std::io::Result<Guid> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Guid::from_random_bytes(bytes))
    }

    /// A version 4 GUID made from 16 bytes that are random to the reader
    /// (fresh entropy, or a digest when the GUID must be reproducible).
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Guid {
        bytes[VERSION_BYTE] = (bytes[VERSION_BYTE] & 0x0f) | VERSION_4;
        bytes[VARIANT_BYTE] = (bytes[VARIANT_BYTE] & 0x3f) | VARIANT_RFC4122;
        Guid(bytes)
    }

    /// The on-disk form in GPT headers and entries: the first three fields
    /// little-endian, the last two as written.
    pub fn to_gpt_bytes(self) -> [u8; 16] {
        let b = self.0;
        let mut out = b;
        out[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        out[4..6].copy_from_slice(&[b[5], b[4]]);
        out[6..8].copy_from_slice(&[b[7], b[6]]);
        out
    }

    /// The text form in upper case, as sgdisk and the UEFI spec print it.
    pub fn to_upper(self) -> String {
        self.to_string().to_ascii_uppercase()
    }
}

impl fmt::Display for Guid {
    /// Lower-case text, as blkid, fstab and mke2fs write UUIDs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = ParseGuidError;
    fn from_str(text: &str) -> Result<Guid, ParseGuidError> {
        let err = || ParseGuidError {
            text: text.to_string(),
        };
        let raw = text.as_bytes();
        if raw.len() != TEXT_LEN || DASHES.iter().any(|&i| raw[i] != b'-') {
            return Err(err());
        }
        let digits: Vec<u8> = raw.iter().copied().filter(|&c| c != b'-').collect();
        let mut bytes = [0u8; 16];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| err())?;
            bytes[i] = u8::from_str_radix(hex, 16).map_err(|_| err())?;
        }
        Ok(Guid(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_esp_type_guid_is_stored_mixed_endian_as_the_uefi_spec_shows() {
        let esp: Guid = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse().unwrap();
        assert_eq!(
            esp.to_gpt_bytes(),
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert_eq!(esp.to_upper(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(esp.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn malformed_guids_are_refused() {
        for bad in [
            "",
            "C12A7328F81F11D2BA4B00A0C93EC93B",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93",
            "G12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn random_guids_carry_version_4_and_the_rfc_4122_variant() {
        let g = Guid::random().unwrap();
        assert_eq!(g.0[6] >> 4, 4);
        assert_eq!(g.0[8] >> 6, 0b10);
        assert_ne!(g, Guid::random().unwrap());
        let fixed = Guid::from_random_bytes([0xff; 16]);
        assert_eq!(fixed.to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }
}
