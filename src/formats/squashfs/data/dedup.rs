//! Duplicate detection: files found by size and hash, confirmed byte for byte
//! against what was written, sharing whole files, block lists or fragments.

use super::*;

impl DataPipeline {
    pub(super) fn candidates(&self, kind: Dedup, size: u64, hash: u128) -> Vec<u32> {
        self.seen
            .get(&(kind, size, hash))
            .cloned()
            .unwrap_or_default()
    }

    /// Makes a new file findable by later duplicates: as a whole, and by its
    /// block list when it owns one.
    pub(super) fn remember(
        &mut self,
        id: u32,
        size: u64,
        whole_hash: u128,
        blocks_hash: u128,
        blocks: Blocks,
    ) {
        if !self.opts.dedup {
            return;
        }
        self.seen
            .entry((Dedup::Whole, size, whole_hash))
            .or_default()
            .push(id);
        if matches!(blocks, Blocks::Own { .. }) {
            self.seen
                .entry((Dedup::Blocks, size, blocks_hash))
                .or_default()
                .push(id);
        }
    }

    /// Reuses an earlier file's blocks; the new file keeps its own tail.
    pub(super) fn share_blocks_of(&mut self, owner: u32, block_bytes: u64) -> Blocks {
        self.stats.partial_duplicate_files += 1;
        self.stats.duplicate_bytes += block_bytes;
        Blocks::SameAs(owner)
    }

    pub(super) fn duplicate_of(&mut self, candidate: u32) -> FileRecord {
        let c = &self.records[candidate as usize];
        self.stats.duplicate_files += 1;
        self.stats.duplicate_bytes += c.size;
        let blocks = match c.blocks {
            Blocks::None => Blocks::None,
            Blocks::Own { .. } => Blocks::SameAs(candidate),
            Blocks::SameAs(owner) => Blocks::SameAs(owner),
        };
        FileRecord {
            size: c.size,
            fragment: c.fragment,
            sparse_bytes: c.sparse_bytes,
            blocks,
        }
    }

    /// The file whose blocks a file uses, and when they were queued.
    fn block_owner(&self, file: u32) -> Option<(u32, u64)> {
        match self.records[file as usize].blocks {
            Blocks::None => None,
            Blocks::Own { end_seq } => Some((file, end_seq)),
            Blocks::SameAs(owner) => match self.records[owner as usize].blocks {
                Blocks::Own { end_seq } => Some((owner, end_seq)),
                _ => unreachable!("block owners own their blocks"),
            },
        }
    }

    /// Byte-compares held data with an earlier file as written: its blocks, and
    /// with `with_tail` its tail too.
    pub(super) fn matches_in_memory(
        &mut self,
        candidate: u32,
        data: &[u8],
        with_tail: bool,
    ) -> Result<bool, Error> {
        let fragment = self.records[candidate as usize].fragment;
        let bs = self.opts.block_size;
        let mut offset = 0usize;
        if let Some((owner, end_seq)) = self.block_owner(candidate) {
            let list = self.wait_for_blocks(owner, end_seq)?;
            let mut pos = list.start;
            let mut plain = vec![0u8; bs];
            let mut stored = Vec::new();
            for &word in &list.sizes {
                let len = bs.min(data.len() - offset);
                let expected = &data[offset..offset + len];
                offset += len;
                if word == 0 {
                    if !is_zero(expected) {
                        return Ok(false);
                    }
                    continue;
                }
                let disk_len = (word & !UNCOMPRESSED_BIT) as usize;
                stored.resize(disk_len, 0);
                self.readback
                    .read_exact_at(&mut stored, pos)
                    .map_err(Error::Writing)?;
                pos += disk_len as u64;
                let same = if word & UNCOMPRESSED_BIT != 0 {
                    stored == expected
                } else {
                    let n = self.codec.decompress(&stored, &mut plain)?;
                    n == len && &plain[..n] == expected
                };
                if !same {
                    return Ok(false);
                }
            }
        }
        if !with_tail {
            return Ok(true);
        }
        match fragment {
            Some(f) => self.fragment_matches(f, &data[offset..]),
            None => Ok(offset == data.len()),
        }
    }

    /// Compares a streamed file's written blocks with an earlier file's.
    pub(super) fn matches_streamed(
        &mut self,
        candidate: u32,
        id: u32,
        end_seq: u64,
        tail: Option<&[u8]>,
    ) -> Result<bool, Error> {
        let Some((owner, owner_end)) = self.block_owner(candidate) else {
            return Ok(false);
        };
        let theirs = self.wait_for_blocks(owner, owner_end)?;
        let ours = self.wait_for_blocks(id, end_seq)?;
        if theirs.sizes != ours.sizes {
            return Ok(false);
        }
        let mut remaining: u64 = ours
            .sizes
            .iter()
            .map(|w| (w & !UNCOMPRESSED_BIT) as u64)
            .sum();
        let (mut a, mut b) = (vec![0u8; WRITE_BUFFER], vec![0u8; WRITE_BUFFER]);
        let (mut pa, mut pb) = (theirs.start, ours.start);
        while remaining > 0 {
            let n = remaining.min(WRITE_BUFFER as u64) as usize;
            self.readback
                .read_exact_at(&mut a[..n], pa)
                .map_err(Error::Writing)?;
            self.readback
                .read_exact_at(&mut b[..n], pb)
                .map_err(Error::Writing)?;
            if a[..n] != b[..n] {
                return Ok(false);
            }
            (pa, pb, remaining) = (pa + n as u64, pb + n as u64, remaining - n as u64);
        }
        let Some(tail) = tail else {
            return Ok(true);
        };
        match self.records[candidate as usize].fragment {
            Some(f) => self.fragment_matches(f, tail),
            None => Ok(tail.is_empty()),
        }
    }

    fn fragment_matches(&mut self, f: FragmentRef, expected: &[u8]) -> Result<bool, Error> {
        let range = f.offset as usize..f.offset as usize + expected.len();
        if let Some(open) = self.packers.iter().find(|p| p.index == Some(f.index)) {
            return Ok(open.buf.get(range) == Some(expected));
        }
        if self.fragment_cache.as_ref().map(|(i, _)| *i) != Some(f.index) {
            let entry = self.wait_for_fragment(f.index)?;
            let disk_len = (entry.size_word & !UNCOMPRESSED_BIT) as usize;
            let mut stored = vec![0u8; disk_len];
            self.readback
                .read_exact_at(&mut stored, entry.start)
                .map_err(Error::Writing)?;
            let plain = if entry.size_word & UNCOMPRESSED_BIT != 0 {
                stored
            } else {
                let mut plain = vec![0u8; self.opts.block_size];
                let n = self.codec.decompress(&stored, &mut plain)?;
                plain.truncate(n);
                plain
            };
            self.fragment_cache = Some((f.index, plain));
        }
        let (_, plain) = self.fragment_cache.as_ref().expect("filled above");
        Ok(plain.get(range) == Some(expected))
    }
}
