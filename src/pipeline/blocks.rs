//! The build's block cache: opened under the stage cache, its warnings
//! logged, and pruned to its bound after each build.

use std::sync::Arc;

use anyhow::Context;

use super::cache::Cache;
use super::{BuildRequest, Log};
use crate::blockcache::{self, BlockStore};

/// The block store under `cache`, or None when turned off.
pub fn open_block_cache(cache: &Cache, enabled: bool) -> anyhow::Result<Option<Arc<BlockStore>>> {
    if !enabled {
        return Ok(None);
    }
    let store = cache
        .block_store()
        .with_context(|| format!("opening the block cache in {}", cache.root().display()))?;
    Ok(Some(Arc::new(store)))
}

/// Names the corrupt block cache entries a writer found (and replaced).
pub(super) fn warn_block_cache(log: &Log, stats: Option<&blockcache::Stats>) {
    for line in stats.map(|s| s.warnings()).unwrap_or_default() {
        log.info(&format!("warning: {line}"));
    }
}

/// Keeps the block cache within its bound after a build, least recently
/// used entries first.
pub(super) fn prune_block_cache(req: &BuildRequest, log: &Log) -> anyhow::Result<()> {
    let Some(store) = &req.block_cache else {
        return Ok(());
    };
    let report = store
        .prune(Some(blockcache::DEFAULT_MAX_BYTES), None, false)
        .with_context(|| format!("pruning the block cache in {}", store.root().display()))?;
    if report.removed_entries > 0 {
        log.info(&format!(
            "block cache: removed {} least recently used entries ({}), {} left",
            report.removed_entries,
            crate::util::size::human_bytes(report.freed_bytes),
            crate::util::size::human_bytes(report.remaining_bytes)
        ));
    }
    Ok(())
}
