//! The public writer: entries in, image out.
//!
//! File data streams to disk as entries are added; names, attributes and the
//! per-file block lists stay in memory until [`SquashfsWriter::finish`] writes
//! the inode and directory tables, the lookup tables and finally the superblock
//! at offset 0.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::compressor::{Codec, CodecSettings, Compression};
use super::data::{DataOptions, DataPipeline, DataStats, FileContent, FileLayout};
use super::dir::{ChildEntry, write_listing};
use super::inode::{self, DirBody, Header, Special};
use super::metadata::{MetaRef, MetadataWriter, lookup_table};
use super::superblock::{DEVICE_BLOCK_SIZE, INVALID_TABLE, SUPERBLOCK_SIZE, Superblock, flags};
use super::tree::{Attrs, InodeId, Kind, ROOT, Tree};
use super::xattr::XattrTable;
use super::{Error, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crate::blockcache::{self, BlockCache, BlockStore};
use crate::formats::{NoProgress, Progress};

#[derive(Debug, Clone)]
pub struct Options {
    pub compression: Compression,
    /// None: the compressor's default (mksquashfs's).
    pub level: Option<u32>,
    pub block_size: u32,
    /// Compression threads.
    pub jobs: usize,
    pub xattrs: bool,
    /// Store every owner as root (0:0).
    pub all_root: bool,
    /// Reproducible builds: the image's time, and the upper bound of every
    /// inode's mtime (newer ones are clamped, as with SOURCE_DATE_EPOCH in
    /// mkosi and `tar --clamp-mtime`). None: the image's time is now.
    pub mtime: Option<u32>,
    /// Pack small files into fragment blocks.
    pub fragments: bool,
    /// Also pack the tails of files larger than a block.
    pub tail_ends: bool,
    pub dedup: bool,
    /// Write the export table so the image can be exported over NFS.
    pub exportable: bool,
    /// Look data and fragment blocks up here before compressing them.
    pub block_cache: Option<Arc<BlockStore>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compression: Compression::Zstd,
            level: None,
            block_size: 128 * 1024,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            xattrs: true,
            all_root: false,
            mtime: None,
            fragments: true,
            tail_ends: true,
            dedup: true,
            exportable: true,
            block_cache: None,
        }
    }
}

pub use crate::formats::dirtree::{DeviceKind, EntryMeta, Xattrs};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub image_bytes: u64,
    pub inodes: u32,
    pub files: u64,
    pub directories: u64,
    pub bytes_in: u64,
    pub duplicate_files: u64,
    pub duplicate_bytes: u64,
    /// Files sharing another's blocks with a tail of their own.
    pub partial_duplicate_files: u64,
    pub sparse_bytes: u64,
    pub fragment_blocks: u32,
    pub ids: u16,
    pub xattr_sets: u32,
    /// xattrs dropped because squashfs cannot store their namespace.
    pub skipped_xattrs: u64,
    pub compression: String,
    pub block_size: u32,
    /// Blocks not compressed because they looked incompressible.
    pub raw_by_probe_blocks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_cache: Option<blockcache::Stats>,
}

pub struct SquashfsWriter {
    opts: Options,
    settings: CodecSettings,
    tree: Tree,
    data: DataPipeline,
    xattrs: XattrTable,
    mkfs_time: u32,
    progress: Arc<dyn Progress>,
}

impl SquashfsWriter {
    /// Starts an image in `file`, which must be empty and opened for reading
    /// and writing (duplicate checks read back what was written).
    pub fn new(file: File, opts: Options) -> Result<SquashfsWriter, Error> {
        Self::with_progress(file, opts, Arc::new(NoProgress))
    }

    pub fn with_progress(
        file: File,
        opts: Options,
        progress: Arc<dyn Progress>,
    ) -> Result<SquashfsWriter, Error> {
        let block_size = opts.block_size;
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(Error::BadBlockSize { block_size });
        }
        let level = opts.level.unwrap_or(opts.compression.default_level());
        opts.compression.check_level(level)?;
        let settings = CodecSettings {
            compression: opts.compression,
            level,
            block_size,
        };
        let options_len = settings.options_record().map_or(0, |r| 2 + r.len() as u64);
        let data = DataPipeline::new(
            file,
            settings,
            DataOptions {
                block_size: block_size as usize,
                jobs: opts.jobs.max(1),
                fragments: opts.fragments,
                tail_ends: opts.tail_ends,
                dedup: opts.dedup,
                data_start: SUPERBLOCK_SIZE as u64 + options_len,
            },
            opts.block_cache
                .as_ref()
                .map(|store| BlockCache::new(Arc::clone(store), &settings.cache_namespace())),
        )?;
        let mkfs_time = opts.mtime.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs().min(u32::MAX as u64) as u32)
                .unwrap_or(0)
        });
        let dir_attrs = Attrs {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: mkfs_time,
            xattr: None,
        };
        Ok(SquashfsWriter {
            settings,
            tree: Tree::new(dir_attrs.clone(), dir_attrs),
            data,
            xattrs: XattrTable::default(),
            mkfs_time,
            progress,
            opts,
        })
    }

    fn attrs(&mut self, meta: &EntryMeta) -> Attrs {
        let mtime = match self.opts.mtime {
            Some(limit) => meta.mtime.min(limit as i64),
            None => meta.mtime,
        };
        let (uid, gid) = if self.opts.all_root {
            (0, 0)
        } else {
            (meta.uid, meta.gid)
        };
        let xattr = if self.opts.xattrs && !meta.xattrs.is_empty() {
            self.xattrs.intern(meta.xattrs.clone())
        } else {
            None
        };
        Attrs {
            mode: (meta.mode & 0o7777) as u16,
            uid,
            gid,
            mtime: mtime.clamp(0, u32::MAX as i64) as u32,
            xattr,
        }
    }

    pub fn add_directory(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), Error> {
        let attrs = self.attrs(meta);
        self.tree.insert(
            path,
            Kind::Dir {
                entries: BTreeMap::new(),
                parent: ROOT,
            },
            attrs,
        )?;
        Ok(())
    }

    /// Adds a regular file, reading its `size` bytes of content now.
    pub fn add_file(
        &mut self,
        path: &[u8],
        meta: &EntryMeta,
        content: FileContent<'_>,
        size: u64,
    ) -> Result<(), Error> {
        // Validate the name before spending time on the data.
        super::tree::components(path)?;
        let file_id = self
            .data
            .add_file(path, content, size, self.progress.as_ref())?;
        let attrs = self.attrs(meta);
        self.tree.insert(path, Kind::File { file_id }, attrs)?;
        Ok(())
    }

    pub fn add_symlink(
        &mut self,
        path: &[u8],
        meta: &EntryMeta,
        target: &[u8],
    ) -> Result<(), Error> {
        if target.is_empty() {
            return Err(super::tree::invalid(path, "symlink target is empty"));
        }
        let attrs = self.attrs(meta);
        self.tree
            .insert(path, Kind::Symlink(target.to_vec()), attrs)?;
        Ok(())
    }

    pub fn add_device(
        &mut self,
        path: &[u8],
        meta: &EntryMeta,
        kind: DeviceKind,
        major: u32,
        minor: u32,
    ) -> Result<(), Error> {
        if major > 0xfff || minor > 0xfffff {
            return Err(super::tree::invalid(
                path,
                &format!("device {major}:{minor} does not fit 12-bit major / 20-bit minor"),
            ));
        }
        let rdev = inode::encode_device(major, minor);
        let kind = match kind {
            DeviceKind::Block => Kind::BlockDev(rdev),
            DeviceKind::Char => Kind::CharDev(rdev),
        };
        let attrs = self.attrs(meta);
        self.tree.insert(path, kind, attrs)?;
        Ok(())
    }

    pub fn add_fifo(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), Error> {
        let attrs = self.attrs(meta);
        self.tree.insert(path, Kind::Fifo, attrs)?;
        Ok(())
    }

    pub fn add_socket(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), Error> {
        let attrs = self.attrs(meta);
        self.tree.insert(path, Kind::Socket, attrs)?;
        Ok(())
    }

    /// Adds `path` as another name of the existing non-directory `target`.
    pub fn add_hard_link(&mut self, path: &[u8], target: &[u8]) -> Result<(), Error> {
        self.tree.link(path, target)
    }

    /// Writes the tables and the superblock. The file is complete and padded
    /// to 4 KiB when this returns.
    pub fn finish(self) -> Result<Summary, Error> {
        let SquashfsWriter {
            opts,
            settings,
            tree,
            data,
            xattrs,
            mkfs_time,
            ..
        } = self;
        let data = data.finish()?;
        let mut codec = Codec::new(settings)?;
        let mut file = BufWriter::with_capacity(1 << 20, data.file);
        let mut pos = data.end;
        let put = |file: &mut BufWriter<File>, bytes: &[u8], pos: &mut u64| -> Result<u64, Error> {
            let at = *pos;
            file.write_all(bytes).map_err(Error::Writing)?;
            *pos += bytes.len() as u64;
            Ok(at)
        };

        let tables = InodeTables::build(&tree, &data.layouts, &mut codec)?;
        let mut sb = Superblock {
            inode_count: tables.order.len() as u32,
            modification_time: mkfs_time,
            block_size: opts.block_size,
            fragment_entry_count: data.fragments.len() as u32,
            compression_id: opts.compression.id(),
            id_count: tables.ids.len() as u16,
            root_inode: tables.root.packed(),
            xattr_id_table_start: INVALID_TABLE,
            fragment_table_start: INVALID_TABLE,
            export_table_start: INVALID_TABLE,
            ..Default::default()
        };
        sb.inode_table_start = put(&mut file, &tables.inodes, &mut pos)?;
        sb.directory_table_start = put(&mut file, &tables.dirs, &mut pos)?;

        if !data.fragments.is_empty() {
            let mut records = Vec::with_capacity(data.fragments.len() * 16);
            for f in &data.fragments {
                records.extend_from_slice(&f.start.to_le_bytes());
                records.extend_from_slice(&f.size_word.to_le_bytes());
                records.extend_from_slice(&0u32.to_le_bytes());
            }
            let (bytes, at) = lookup_table(&mut codec, &records, &[], pos)?;
            put(&mut file, &bytes, &mut pos)?;
            sb.fragment_table_start = at;
        }
        if opts.exportable {
            // inode number n is entry n - 1
            let mut records = vec![0u8; tables.order.len() * 8];
            for (i, &id) in tables.order.iter().enumerate() {
                records[i * 8..i * 8 + 8].copy_from_slice(&tables.refs[id].packed().to_le_bytes());
            }
            let (bytes, at) = lookup_table(&mut codec, &records, &[], pos)?;
            put(&mut file, &bytes, &mut pos)?;
            sb.export_table_start = at;
        }
        let id_records: Vec<u8> = tables.ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        let (bytes, at) = lookup_table(&mut codec, &id_records, &[], pos)?;
        put(&mut file, &bytes, &mut pos)?;
        sb.id_table_start = at;
        if !xattrs.is_empty() {
            let (bytes, at) = xattrs.write(&mut codec, pos)?;
            put(&mut file, &bytes, &mut pos)?;
            sb.xattr_id_table_start = at;
        }
        sb.bytes_used = pos;
        let padded = pos.div_ceil(DEVICE_BLOCK_SIZE) * DEVICE_BLOCK_SIZE;
        put(&mut file, &vec![0u8; (padded - pos) as usize], &mut pos)?;

        sb.flags = superblock_flags(&opts, settings.options_record().is_some());
        let mut file = file
            .into_inner()
            .map_err(|e| Error::Writing(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(Error::Writing)?;
        file.write_all(&sb.to_bytes()).map_err(Error::Writing)?;
        if let Some(record) = settings.options_record() {
            // stored raw: length with bit 15 set
            file.write_all(&(record.len() as u16 | 0x8000).to_le_bytes())
                .map_err(Error::Writing)?;
            file.write_all(&record).map_err(Error::Writing)?;
        }
        file.flush().map_err(Error::Writing)?;

        let DataStats {
            files,
            bytes_in,
            duplicate_files,
            duplicate_bytes,
            partial_duplicate_files,
            sparse_bytes,
            fragment_blocks,
            raw_by_probe_blocks,
        } = data.stats;
        Ok(Summary {
            image_bytes: padded,
            inodes: sb.inode_count,
            files,
            directories: tables
                .order
                .iter()
                .filter(|&&id| tree.inodes[id].is_dir())
                .count() as u64,
            bytes_in,
            duplicate_files,
            duplicate_bytes,
            partial_duplicate_files,
            sparse_bytes,
            fragment_blocks,
            ids: sb.id_count,
            xattr_sets: xattrs.len() as u32,
            skipped_xattrs: xattrs.skipped,
            compression: opts.compression.to_string(),
            block_size: opts.block_size,
            raw_by_probe_blocks,
            block_cache: data.cache_stats,
        })
    }
}

fn superblock_flags(opts: &Options, has_options_record: bool) -> u16 {
    let mut f = 0;
    if !opts.fragments {
        f |= flags::NO_FRAGMENTS;
    }
    if opts.fragments && opts.tail_ends {
        f |= flags::ALWAYS_FRAGMENTS;
    }
    if opts.dedup {
        f |= flags::DUPLICATES;
    }
    if opts.exportable {
        f |= flags::EXPORTABLE;
    }
    if !opts.xattrs {
        f |= flags::NO_XATTRS;
    }
    if has_options_record {
        f |= flags::COMPRESSOR_OPTIONS;
    }
    f
}

/// The inode and directory tables, built together: a directory's listing
/// needs its children's inode positions, and its inode needs the listing's.
struct InodeTables {
    inodes: Vec<u8>,
    dirs: Vec<u8>,
    /// Reachable inodes in the order written; inode number = position + 1.
    order: Vec<InodeId>,
    refs: Vec<MetaRef>,
    root: MetaRef,
    ids: Vec<u32>,
}

impl InodeTables {
    fn build(tree: &Tree, layouts: &[FileLayout], codec: &mut Codec) -> Result<InodeTables, Error> {
        let order = write_order(tree);
        let mut numbers = vec![0u32; tree.inodes.len()];
        for (i, &id) in order.iter().enumerate() {
            numbers[id] = i as u32 + 1;
        }
        let mut ids = IdTable::default();
        let mut refs = vec![MetaRef::default(); tree.inodes.len()];
        let mut inode_table = MetadataWriter::new();
        let mut dir_table = MetadataWriter::new();

        for &id in &order {
            let node = &tree.inodes[id];
            let header = Header {
                mode: node.attrs.mode,
                uid_index: ids.index(node.attrs.uid)?,
                gid_index: ids.index(node.attrs.gid)?,
                mtime: node.attrs.mtime,
                inode_number: numbers[id],
                xattr: node.attrs.xattr,
            };
            let bytes = match &node.kind {
                Kind::Dir { entries, parent } => {
                    let children: Vec<ChildEntry> = entries
                        .iter()
                        .map(|(name, &child)| ChildEntry {
                            name,
                            inode: refs[child],
                            inode_number: numbers[child],
                            basic_type: tree.inodes[child].basic_type(),
                        })
                        .collect();
                    let listing = write_listing(&mut dir_table, codec, &children)?;
                    let subdirs = entries
                        .values()
                        .filter(|&&c| tree.inodes[c].is_dir())
                        .count() as u32;
                    inode::directory(
                        &header,
                        &DirBody {
                            listing_block: listing.start.block as u32,
                            listing_offset: listing.start.offset,
                            file_size: listing.size + 3,
                            nlink: 2 + subdirs,
                            // the root's parent is one past the last inode, as mksquashfs writes it
                            parent_inode: if id == ROOT {
                                order.len() as u32 + 1
                            } else {
                                numbers[*parent]
                            },
                            index: &listing.index,
                        },
                    )
                }
                Kind::File { file_id } => {
                    inode::regular_file(&header, &layouts[*file_id as usize], node.links)
                }
                Kind::Symlink(target) => inode::symlink(&header, target, node.links),
                Kind::BlockDev(rdev) => {
                    inode::special(&header, Special::BlockDev(*rdev), node.links)
                }
                Kind::CharDev(rdev) => inode::special(&header, Special::CharDev(*rdev), node.links),
                Kind::Fifo => inode::special(&header, Special::Fifo, node.links),
                Kind::Socket => inode::special(&header, Special::Socket, node.links),
            };
            refs[id] = inode_table.position();
            inode_table.write(codec, &bytes)?;
        }
        let root = refs[ROOT];
        let (inodes, _) = inode_table.finish(codec)?;
        let (dirs, _) = dir_table.finish(codec)?;
        Ok(InodeTables {
            inodes,
            dirs,
            order,
            refs,
            root,
            ids: ids.ids,
        })
    }
}

/// Post-order: each directory's subdirectories (recursively), then its other
/// children, then itself; the root comes last. Iterative, so a hostile tree
/// thousands of levels deep cannot overflow the stack.
fn write_order(tree: &Tree) -> Vec<InodeId> {
    let children = |id: InodeId| -> Vec<InodeId> {
        match &tree.inodes[id].kind {
            Kind::Dir { entries, .. } => entries.values().copied().collect(),
            _ => Vec::new(),
        }
    };
    let mut order = Vec::with_capacity(tree.inodes.len());
    let mut placed = vec![false; tree.inodes.len()];
    let mut stack = vec![(ROOT, children(ROOT), 0usize)];
    while let Some((dir, kids, next)) = stack.last_mut() {
        if *next < kids.len() {
            let child = kids[*next];
            *next += 1;
            if tree.inodes[child].is_dir() {
                let grandchildren = children(child);
                stack.push((child, grandchildren, 0));
            }
            continue;
        }
        for &child in kids.iter() {
            if !tree.inodes[child].is_dir() && !placed[child] {
                placed[child] = true;
                order.push(child);
            }
        }
        order.push(*dir);
        stack.pop();
    }
    order
}

#[derive(Default)]
struct IdTable {
    ids: Vec<u32>,
    index: HashMap<u32, u16>,
}

impl IdTable {
    fn index(&mut self, id: u32) -> Result<u16, Error> {
        if let Some(&i) = self.index.get(&id) {
            return Ok(i);
        }
        let i = u16::try_from(self.ids.len()).map_err(|_| Error::TooManyIds)?;
        self.ids.push(id);
        self.index.insert(id, i);
        Ok(i)
    }
}
