//! NoCloud seeds for `osforge boot --seed DIR`: the directory's files at
//! the root of an ISO labelled `cidata`, written with osforge's own ISO
//! writer, as cloud-init's NoCloud datasource looks for it.

use std::fs::File;
use std::path::Path;

use super::Error;
use crate::formats::NoProgress;
use crate::formats::iso::{IsoImage, IsoOptions};
use crate::profile::NOCLOUD_VOLUME_ID;

/// Writes `dir`'s tree as a `cidata` ISO at `out`; returns its size.
pub fn write_nocloud_seed(dir: &Path, out: &Path) -> Result<u64, Error> {
    if !dir.is_dir() {
        return Err(Error::SeedNotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let writing = |source| Error::WritingSeed {
        path: out.to_path_buf(),
        source,
    };
    let mut iso = IsoImage::new(IsoOptions::new(NOCLOUD_VOLUME_ID)).map_err(writing)?;
    iso.add_tree(dir).map_err(writing)?;
    let file = File::create(out).map_err(|source| Error::CreatingSeed {
        path: out.to_path_buf(),
        source,
    })?;
    let summary = iso.write(&file, &NoProgress).map_err(writing)?;
    Ok(summary.size_bytes)
}
