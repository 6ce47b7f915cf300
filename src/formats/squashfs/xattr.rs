//! Extended attributes.
//!
//! ```text
//!  key/value stream (metadata blocks):
//!     key: prefix id u16 (0 user, 1 trusted, 2 security) | name length u16 | name
//!     value: length u32 | bytes
//!  id table (metadata blocks): per set: kv reference u64 | count u32 | size u32
//!  header: kv stream start u64 | id count u32 | unused u32
//!  lookup: u64 position of each id-table block      <- superblock points at header
//! ```
//!
//! Identical sets (the common case: every file with the same SELinux label or
//! capability) are stored once and shared by id. Only the three prefixes the
//! format knows are stored; others (system.posix_acl_*) are counted and skipped,
//! as mksquashfs does.

use std::collections::HashMap;

use super::Error;
use super::compressor::Codec;
use super::metadata::{MetadataWriter, lookup_table};
use super::superblock::Le;

pub(crate) type XattrSet = Vec<(Vec<u8>, Vec<u8>)>;

const PREFIXES: [(&[u8], u16); 3] = [(b"user.", 0), (b"trusted.", 1), (b"security.", 2)];

#[derive(Default)]
pub(crate) struct XattrTable {
    sets: Vec<XattrSet>,
    ids: HashMap<XattrSet, u32>,
    pub skipped: u64,
}

impl XattrTable {
    /// Returns the id of this set (sorted by name for reproducible output), or
    /// None when nothing storable remains.
    pub fn intern(&mut self, mut set: XattrSet) -> Option<u32> {
        let before = set.len();
        set.retain(|(name, _)| {
            PREFIXES
                .iter()
                .any(|(p, _)| name.starts_with(p) && name.len() > p.len())
        });
        self.skipped += (before - set.len()) as u64;
        if set.is_empty() {
            return None;
        }
        set.sort();
        set.dedup_by(|a, b| a.0 == b.0);
        if let Some(&id) = self.ids.get(&set) {
            return Some(id);
        }
        let id = self.sets.len() as u32;
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        Some(id)
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Serialises the table to start at `table_start`; returns the bytes and
    /// the absolute position of the id-table header.
    pub fn write(&self, codec: &mut Codec, table_start: u64) -> Result<(Vec<u8>, u64), Error> {
        let mut kv = MetadataWriter::new();
        let mut ids = Le::default();
        for set in &self.sets {
            let reference = kv.position().packed();
            let mut size = 0u32;
            for (name, value) in set {
                let (prefix, prefix_id) = PREFIXES
                    .iter()
                    .find(|(p, _)| name.starts_with(p))
                    .expect("filtered on intern");
                let short = &name[prefix.len()..];
                let mut b = Le::with_capacity(8 + short.len() + value.len());
                b.u16(*prefix_id);
                b.u16(short.len() as u16);
                b.bytes(short);
                b.u32(value.len() as u32);
                b.bytes(value);
                kv.write(codec, &b.0)?;
                // what listxattr needs: full name, its NUL, and the value
                size += (name.len() + 1 + value.len()) as u32;
            }
            ids.u64(reference);
            ids.u32(set.len() as u32);
            ids.u32(size);
        }
        let (mut bytes, _) = kv.finish(codec)?;
        let mut header = Le::with_capacity(16);
        header.u64(table_start);
        header.u32(self.sets.len() as u32);
        header.u32(0);
        let (id_part, header_at) =
            lookup_table(codec, &ids.0, &header.0, table_start + bytes.len() as u64)?;
        bytes.extend_from_slice(&id_part);
        Ok((bytes, header_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> XattrSet {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn identical_sets_share_an_id_whatever_their_order() {
        let mut t = XattrTable::default();
        let a = t.intern(set(&[("user.a", "1"), ("security.selinux", "x")]));
        let b = t.intern(set(&[("security.selinux", "x"), ("user.a", "1")]));
        let c = t.intern(set(&[("user.a", "2")]));
        assert_eq!(a, Some(0));
        assert_eq!(b, Some(0));
        assert_eq!(c, Some(1));
    }

    #[test]
    fn unknown_prefixes_are_skipped_and_counted() {
        let mut t = XattrTable::default();
        assert_eq!(t.intern(set(&[("system.posix_acl_access", "..")])), None);
        assert_eq!(t.skipped, 1);
        assert!(t.is_empty());
    }
}
