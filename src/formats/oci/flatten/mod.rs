//! An image's layers flattened into one tar stream: its root filesystem, as
//! a runtime would unpack it, without root and without writing to disk.
//!
//! Two passes over the layers, bottom-up each time. The first reads names and
//! types only and decides, in [`plan`], which members survive; it also checks
//! every name, so a hostile layer is refused before a byte is written. The
//! second copies the survivors' headers and data in layer order. Both passes
//! check each blob's digest and diff_id, so a blob that changes in between is
//! caught too.

mod plan;

use std::collections::HashMap;
use std::io::{self, Read, Write};

use tar::EntryType;

use super::Error;
use super::digest::Digest;
use super::layout::{ImageRef, LayerBlob, LayerReader, Layout, explain};
use super::names::{self, Name};
use super::tar_out::{BLOCK_BYTES, Member, NotingReader, TarWriter};
use plan::{Emit, MemberId, Op, Plan};

#[derive(Debug, Clone, serde::Serialize)]
pub struct FlattenSummary {
    pub manifest_digest: Digest,
    pub layers: usize,
    /// Members written.
    pub members: u64,
    /// File data written.
    pub data_bytes: u64,
    /// The tar stream's length.
    pub tar_bytes: u64,
}

/// What the first pass needs of a member, and the second keeps of it.
struct MemberInfo {
    name: Name,
    kind: EntryType,
    /// A hard link's target, normalised.
    link: Vec<u8>,
    pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl MemberInfo {
    fn op(&self) -> Option<Op<'_>> {
        Some(match &self.name {
            Name::Whiteout(p) => Op::Whiteout(p),
            Name::Opaque(p) => Op::Opaque(p),
            Name::AufsMeta => return None,
            Name::Path(p) => match self.kind {
                EntryType::Directory => Op::Directory(p),
                EntryType::Link => Op::HardLink {
                    path: p,
                    target: &self.link,
                },
                _ => Op::Other(p),
            },
        })
    }
}

type Entry<'a, 'r> = tar::Entry<'a, &'r mut LayerReader>;

/// Reads a member's name, type, link and pax records; None for what is not
/// a member of the tree (a pax global header).
fn read_info(layer: &LayerBlob, entry: &mut Entry<'_, '_>) -> Result<Option<MemberInfo>, Error> {
    let kind = entry.header().entry_type();
    if kind == EntryType::XGlobalHeader {
        return Ok(None);
    }
    let raw_name = entry.path_bytes().into_owned();
    let refuse = |reason: String, hostile: bool| {
        let (layer, name) = (layer.path.clone(), raw_name.clone());
        if hostile {
            Error::HostileEntry {
                layer,
                name,
                reason,
            }
        } else {
            Error::UnsupportedEntry {
                layer,
                name,
                reason,
            }
        }
    };
    let name = names::classify(&raw_name).map_err(|r| refuse(r.into(), true))?;
    use EntryType as T;
    if !matches!(
        kind,
        T::Regular
            | T::Continuous
            | T::GNUSparse
            | T::Directory
            | T::Symlink
            | T::Link
            | T::Char
            | T::Block
            | T::Fifo
    ) {
        return Err(refuse(format!("tar member type {kind:?}"), false));
    }
    let link = if kind == T::Link {
        let target = entry.link_name_bytes().unwrap_or_default();
        names::normalize(&target).map_err(|r| refuse(format!("hard link target: {r}"), true))?
    } else {
        Vec::new()
    };
    let mut pax = Vec::new();
    if let Some(records) = entry.pax_extensions().map_err(|e| explain(layer, e))? {
        for record in records {
            let record = record.map_err(|e| explain(layer, e))?;
            let key = record.key_bytes();
            if key.starts_with(b"GNU.sparse.") {
                return Err(refuse("a GNU pax sparse file".into(), false));
            }
            // Written anew for the member as it is written out.
            if !matches!(key, b"path" | b"linkpath" | b"size") {
                pax.push((key.to_vec(), record.value_bytes().to_vec()));
            }
        }
    }
    Ok(Some(MemberInfo {
        name,
        kind,
        link,
        pax,
    }))
}

/// Calls `f` for every member of a layer, in order, then checks the blob.
fn for_each_member(
    layer_index: u32,
    layer: &LayerBlob,
    mut f: impl FnMut(MemberId, &mut Entry<'_, '_>, MemberInfo) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut reader = LayerReader::open(layer)?;
    let mut archive = tar::Archive::new(&mut reader);
    for (index, entry) in archive
        .entries()
        .map_err(|e| explain(layer, e))?
        .enumerate()
    {
        let mut entry = entry.map_err(|e| explain(layer, e))?;
        if let Some(info) = read_info(layer, &mut entry)? {
            let id = MemberId {
                layer: layer_index,
                index: index as u64,
            };
            f(id, &mut entry, info)?;
        }
    }
    reader.finish()
}

/// Writes the root filesystem of the image `image` names (for an index
/// of several platforms, the `architecture` one) to `out` as one tar stream.
pub fn flatten<W: Write>(
    image: &ImageRef,
    architecture: &str,
    out: W,
) -> Result<FlattenSummary, Error> {
    let layout = Layout::open(&image.dir)?;
    let resolved = layout.resolve(image.tag.as_deref(), architecture)?;

    let mut plan = Plan::default();
    for (k, layer) in resolved.layers.iter().enumerate() {
        for_each_member(k as u32, layer, |id, _, info| {
            let Some(op) = info.op() else {
                return Ok(());
            };
            plan.apply(id, op).map_err(|reason| Error::HostileEntry {
                layer: layer.path.clone(),
                name: match &info.name {
                    Name::Path(p) | Name::Whiteout(p) | Name::Opaque(p) => p.clone(),
                    Name::AufsMeta => Vec::new(),
                },
                reason,
            })
        })?;
    }
    let emit: HashMap<MemberId, Emit> = plan.finish();

    let mut tar = TarWriter::new(out);
    let (mut members, mut data_bytes) = (0, 0);
    for (k, layer) in resolved.layers.iter().enumerate() {
        for_each_member(k as u32, layer, |id, entry, info| {
            let Some(how) = emit.get(&id) else {
                return Ok(());
            };
            data_bytes += write_member(&mut tar, layer, entry, &info, how)?;
            members += 1;
            Ok(())
        })?;
    }
    let tar_bytes = tar.position() + 2 * BLOCK_BYTES;
    let mut out = tar.finish().map_err(Error::WritingTar)?;
    out.flush().map_err(Error::WritingTar)?;
    Ok(FlattenSummary {
        manifest_digest: resolved.manifest_digest,
        layers: resolved.layers.len(),
        members,
        data_bytes,
        tar_bytes,
    })
}

/// Copies one member; returns the data bytes written.
fn write_member<W: Write>(
    tar: &mut TarWriter<W>,
    layer: &LayerBlob,
    entry: &mut Entry<'_, '_>,
    info: &MemberInfo,
    how: &Emit,
) -> Result<u64, Error> {
    let header = entry.header().clone();
    let Name::Path(own_path) = &info.name else {
        unreachable!("only paths survive");
    };
    let symlink_target = entry.link_name_bytes().map(|l| l.into_owned());
    let (path, kind, link): (&[u8], EntryType, &[u8]) = match (how, info.kind) {
        (Emit::LinkTo(target), _) => (own_path, EntryType::Link, target),
        (Emit::Renamed(name), kind) => (name, kind, b""),
        (Emit::AsIs, EntryType::Link) => (own_path, EntryType::Link, &info.link),
        (Emit::AsIs, kind) => (own_path, kind, b""),
    };
    // A GNU sparse member reads back expanded: it is written as a file.
    let kind = match kind {
        EntryType::Continuous | EntryType::GNUSparse => EntryType::Regular,
        k => k,
    };
    let link = if kind == EntryType::Symlink {
        symlink_target.as_deref().unwrap_or_default()
    } else {
        link
    };
    let size = if kind == EntryType::Regular {
        entry.size()
    } else {
        0
    };
    let field = |r: io::Result<u64>| r.map_err(|e| explain(layer, e));
    // Only nodes have device numbers; other members' fields may be empty.
    let device = if matches!(kind, EntryType::Char | EntryType::Block) {
        let number = |r: io::Result<Option<u32>>| r.map(Option::unwrap_or_default);
        (
            number(header.device_major()).map_err(|e| explain(layer, e))?,
            number(header.device_minor()).map_err(|e| explain(layer, e))?,
        )
    } else {
        (0, 0)
    };
    let member = Member {
        path,
        kind,
        link,
        size,
        mode: header.mode().map_err(|e| explain(layer, e))?,
        uid: field(header.uid())?,
        gid: field(header.gid())?,
        mtime: field(header.mtime())? as i64,
        device,
        uname: header.username_bytes().unwrap_or_default(),
        gname: header.groupname_bytes().unwrap_or_default(),
        pax: &info.pax,
    };
    let mut data = NotingReader::new(entry.by_ref().take(size));
    match tar.append(&member, &mut data) {
        Ok(()) => Ok(size),
        Err(e) if data.failed || e.kind() == io::ErrorKind::UnexpectedEof => Err(explain(layer, e)),
        Err(e) => Err(Error::WritingTar(e)),
    }
}
