use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;

/// A compressor that can only say what it did: the store must return its
/// answer without calling it again.
fn reverse(block: &[u8], out: &mut Vec<u8>) -> Result<bool, ()> {
    out.clear();
    out.extend(block.iter().rev().take(block.len() / 2));
    Ok(block[0] != 0xff)
}

fn no_compressor(_: &[u8], _: &mut Vec<u8>) -> Result<bool, ()> {
    panic!("the store had this block")
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|d| d.file_name() != TMP_DIR)
        .flat_map(|d| fs::read_dir(d.path()).unwrap().flatten().map(|e| e.path()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_block_compressed_once_is_answered_from_the_store_in_its_namespace_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlockStore::open(dir.path()).unwrap());
    let cache = BlockCache::new(Arc::clone(&store), "test zstd 15");
    let block = b"some block of data".to_vec();
    let mut out = Vec::new();
    assert_eq!(cache.compress_with(&block, &mut out, reverse), Ok(true));
    let first = out.clone();
    out.clear();
    assert_eq!(
        cache.compress_with(&block, &mut out, no_compressor),
        Ok(true)
    );
    assert_eq!(out, first);
    let stored = vec![0xff; 64];
    assert_eq!(cache.compress_with(&stored, &mut out, reverse), Ok(false));
    assert_eq!(
        cache.compress_with(&stored, &mut out, no_compressor),
        Ok(false)
    );
    let s = cache.stats();
    assert_eq!((s.reused_blocks, s.compressed_blocks), (2, 2));
    assert_eq!(s.reused_bytes, block.len() as u64 + 64);

    let other = BlockCache::new(store, "test zstd 16");
    assert_eq!(other.compress_with(&block, &mut out, reverse), Ok(true));
    assert_eq!(other.stats().reused_blocks, 0, "another namespace misses");
}

#[test]
fn a_corrupt_or_truncated_entry_is_reported_recomputed_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlockStore::open(dir.path()).unwrap());
    let cache = BlockCache::new(Arc::clone(&store), "ns");
    let block = b"0123456789abcdef".to_vec();
    let mut out = Vec::new();
    cache.compress_with(&block, &mut out, reverse).unwrap();
    let good = out.clone();
    let found = entries(dir.path());
    assert_eq!(found.len(), 1);
    let entry = found[0].clone();
    for damage in [
        |b: &mut Vec<u8>| b[60] ^= 1,
        |b: &mut Vec<u8>| b.truncate(58),
    ] {
        let mut bytes = fs::read(&entry).unwrap();
        damage(&mut bytes);
        fs::write(&entry, bytes).unwrap();
        let fresh = BlockCache::new(Arc::clone(&store), "ns");
        assert_eq!(fresh.compress_with(&block, &mut out, reverse), Ok(true));
        assert_eq!(out, good);
        let s = fresh.stats();
        assert_eq!((s.corrupt_entries, s.reused_blocks), (1, 0));
        assert_eq!(s.corrupt_paths, vec![entry.clone()]);
        assert!(s.warnings()[0].contains(&entry.display().to_string()));
        // Replaced: the next lookup is a clean hit.
        let again = BlockCache::new(Arc::clone(&store), "ns");
        again
            .compress_with(&block, &mut out, no_compressor)
            .unwrap();
        assert_eq!(out, good);
    }
}

#[test]
fn prune_removes_least_recently_used_entries_first_down_to_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlockStore::open(dir.path()).unwrap());
    let cache = BlockCache::new(Arc::clone(&store), "ns");
    let mut out = Vec::new();
    for i in 0..4u8 {
        cache.compress_with(&[i; 8192], &mut out, reverse).unwrap();
    }
    // Entry i last used i hours ago.
    let now = SystemTime::now();
    for i in 0..4u8 {
        let cache = BlockCache::new(Arc::clone(&store), "ns");
        let key: [u8; 32] = cache
            .prefix
            .clone()
            .chain_update([i; 8192])
            .finalize()
            .into();
        let f = File::options()
            .write(true)
            .open(store.path_of(&key))
            .unwrap();
        f.set_modified(now - Duration::from_secs(3600 * i as u64))
            .unwrap();
    }
    let all = store.prune(None, None, true).unwrap();
    assert_eq!((all.remaining_entries, all.removed_entries), (4, 0));
    let per_entry = all.remaining_bytes / 4;
    let r = store.prune(Some(per_entry * 3), None, false).unwrap();
    assert_eq!((r.removed_entries, r.remaining_entries), (1, 3));
    let r = store
        .prune(None, Some(Duration::from_secs(5400)), false)
        .unwrap();
    assert_eq!((r.removed_entries, r.remaining_entries), (1, 2));
    // The two most recently used stay.
    for i in [0u8, 1] {
        let c = BlockCache::new(Arc::clone(&store), "ns");
        c.compress_with(&[i; 8192], &mut out, no_compressor)
            .unwrap();
    }
    assert_eq!(store.clear(false).unwrap().remaining_entries, 0);
}

#[test]
fn prune_drops_index_files_older_than_every_entry_left_and_past_the_newest_few() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlockStore::open(dir.path()).unwrap());
    let cache = BlockCache::new(Arc::clone(&store), "ns");
    cache
        .compress_with(&[1; 8192], &mut Vec::new(), reverse)
        .unwrap();
    let entry = entries(dir.path()).remove(0);
    let now = SystemTime::now();
    File::options()
        .write(true)
        .open(&entry)
        .unwrap()
        .set_modified(now - Duration::from_secs(3600))
        .unwrap();
    // Index files written 2 hours ago (before the entry), and 6 since.
    let index_dir = dir.path().join(index::INDEX_DIR);
    fs::create_dir_all(&index_dir).unwrap();
    let ages_minutes = [120u64, 50, 40, 30, 20, 10, 1];
    for (i, age) in ages_minutes.iter().enumerate() {
        let path = index_dir.join(format!("{i}{}", index::INDEX_SUFFIX));
        let f = File::create(&path).unwrap();
        f.set_modified(now - Duration::from_secs(60 * age)).unwrap();
    }
    let names = || {
        let mut v: Vec<String> = fs::read_dir(&index_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let dry = store.prune(None, None, true).unwrap();
    assert_eq!(dry.removed_index_files, 3);
    assert_eq!(names().len(), 7, "a dry run removes nothing");
    store.prune(None, None, false).unwrap();
    let kept: Vec<String> = (3..7).map(|i| format!("{i}.idx")).collect();
    assert_eq!(names(), kept, "the newest four");
    // No entries left: no index describes anything.
    let r = store.clear(false).unwrap();
    assert_eq!(r.removed_index_files, 4);
    assert!(names().is_empty());
}
