//! `osforge inspect ARTIFACT`: what is in an ISO, qcow2, raw disk or
//! squashfs, as text or (`--json`) one JSON document. The reading is in
//! [`crate::inspect`]; this file prints.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cli::GlobalArgs;
use crate::error::InputError;
use crate::inspect::{
    self, DiskReport, Filesystem, GrubMenu, IsoReport, Report, SquashfsReport, SuperblockFacts,
};
use crate::util::size::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: ISO, qcow2, raw disk or squashfs (told apart by content).
    pub artifact: PathBuf,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let report = match inspect::inspect(&args.artifact) {
        Ok(report) => report,
        Err(e) if e.is_bad_input() => {
            // One line, the causes joined as main prints a chain.
            let line = format!("{:#}", anyhow::Error::new(e));
            return Err(anyhow::Error::new(InputError(line)));
        }
        Err(e) => return Err(e.into()),
    };
    if global.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if !global.quiet {
        print!("{}", render(&report));
    }
    if let Some(bad) = report.checksums.iter().find(|c| !c.matches) {
        anyhow::bail!(
            "{} does not match {} ({} {}, expected {})",
            bad.file.display(),
            args.artifact.display(),
            bad.algorithm,
            bad.actual,
            bad.expected
        );
    }
    Ok(())
}

/// The report as indented text.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: {} ({}, {} bytes)",
        r.path.display(),
        r.kind,
        human_bytes(r.file_size_bytes),
        r.file_size_bytes
    );
    if let Some(q) = &r.qcow2 {
        let _ = writeln!(
            o,
            "qcow2: version {}, virtual size {} ({} bytes), cluster size {}, compression {}",
            q.version,
            human_bytes(q.virtual_size_bytes),
            q.virtual_size_bytes,
            human_bytes(q.cluster_size_bytes),
            q.compression
        );
    }
    if let Some(d) = &r.disk {
        disk(&mut o, d);
    }
    if let Some(i) = &r.iso {
        iso(&mut o, i);
    }
    if let Some(s) = &r.squashfs {
        squashfs(&mut o, s);
    }
    for c in &r.checksums {
        let verdict = if c.matches {
            "matches"
        } else {
            "DOES NOT MATCH"
        };
        let _ = writeln!(o, "{}: {} {verdict}", c.file.display(), c.algorithm);
    }
    o
}

fn disk(o: &mut String, d: &DiskReport) {
    for m in &d.mbr {
        let _ = writeln!(
            o,
            "MBR partition {}: type {:#04x} ({}){}, start {} size {}",
            m.index,
            m.type_code,
            m.type_name,
            if m.bootable { ", bootable" } else { "" },
            m.start_bytes,
            human_bytes(m.size_bytes)
        );
    }
    match &d.gpt {
        None => {
            let _ = writeln!(o, "GPT: none");
        }
        Some(g) => {
            let state = |h: &inspect::HeaderState| match &h.problem {
                None => format!("LBA {} valid", h.lba),
                Some(p) => format!("LBA {} INVALID: {p}", h.lba),
            };
            let _ = writeln!(
                o,
                "GPT: disk GUID {}; primary header {}; backup header {}",
                g.disk_guid,
                state(&g.primary),
                state(&g.backup)
            );
        }
    }
    partitions(o, &d.partitions);
    esp_files(o, &d.partitions);
    grub(o, d.grub.as_ref());
    for k in &d.kernels {
        let _ = writeln!(
            o,
            "{} {}: {} ({})",
            k.role,
            k.version,
            k.path,
            human_bytes(k.size_bytes)
        );
    }
}

/// The files of every FAT partition (the ESP, on disks and hybrid ISOs).
fn esp_files(o: &mut String, parts: &[inspect::PartitionReport]) {
    for p in parts {
        if let Filesystem::Vfat { files, .. } = &p.filesystem
            && !files.is_empty()
        {
            let _ = writeln!(o, "files on partition {}:", title(p));
            for f in files {
                let signature = match &f.efi {
                    None => String::new(),
                    Some(s) if !s.signed => ", unsigned".into(),
                    Some(s) if s.signers.is_empty() => format!(
                        ", signed (unreadable: {})",
                        s.error.as_deref().unwrap_or("no signer")
                    ),
                    Some(s) => format!(
                        ", signed by {}",
                        s.signers
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                };
                let _ = writeln!(o, "  {} ({}{signature})", f.path, human_bytes(f.size_bytes));
            }
        }
    }
}

/// `3 'esp'`, or just the number when the partition has no name (MBR).
fn title(p: &inspect::PartitionReport) -> String {
    if p.name.is_empty() {
        p.number.to_string()
    } else {
        format!("{} '{}'", p.number, p.name)
    }
}

fn partitions(o: &mut String, parts: &[inspect::PartitionReport]) {
    for p in parts {
        let fs = match &p.filesystem {
            Filesystem::None => "no filesystem".to_string(),
            Filesystem::Ext4 {
                label,
                uuid,
                size_bytes,
                ..
            } => format!(
                "ext4 label '{label}' UUID {uuid} ({})",
                human_bytes(*size_bytes)
            ),
            Filesystem::Vfat {
                fat, label, serial, ..
            } => format!(
                "vfat ({fat}) label '{}' serial {}",
                label.as_deref().unwrap_or(""),
                serial.as_deref().unwrap_or("-")
            ),
            Filesystem::Swap { label, uuid, .. } => format!("swap label '{label}' UUID {uuid}"),
        };
        let type_id = match (&p.type_guid, p.mbr_type) {
            (Some(guid), _) => guid.clone(),
            (None, Some(code)) => format!("MBR {code:#04x}"),
            (None, None) => "-".into(),
        };
        let guid = p
            .guid
            .as_ref()
            .map_or(String::new(), |g| format!(", GUID {g}"));
        let _ = writeln!(
            o,
            "partition {}: {} [{type_id}], bytes {}..{} ({}){guid}; {fs}",
            title(p),
            p.type_name.unwrap_or("unknown type"),
            p.start_bytes,
            p.end_bytes,
            human_bytes(p.size_bytes),
        );
    }
}

fn grub(o: &mut String, menu: Option<&GrubMenu>) {
    let Some(menu) = menu else {
        let _ = writeln!(o, "GRUB menu: none found");
        return;
    };
    let _ = writeln!(o, "GRUB menu ({}):", menu.source);
    for e in &menu.entries {
        let _ = writeln!(o, "  \"{}\"", e.title);
        if let Some(kernel) = &e.kernel {
            let _ = writeln!(
                o,
                "    linux {kernel} {}",
                e.cmdline.as_deref().unwrap_or("")
            );
        }
        if !e.initrd.is_empty() {
            let _ = writeln!(o, "    initrd {}", e.initrd.join(" "));
        }
    }
}

fn iso(o: &mut String, i: &IsoReport) {
    let _ = writeln!(
        o,
        "volume id '{}', application '{}', {} files, volume {}",
        i.volume_id,
        i.application_id,
        i.file_count,
        human_bytes(i.volume_bytes)
    );
    if i.boot_entries.is_empty() {
        let _ = writeln!(o, "El Torito: no boot catalog");
    }
    for b in &i.boot_entries {
        let _ = writeln!(
            o,
            "El Torito {}: {}emulation {}, load {} sectors, image at block {} ({})",
            b.platform,
            if b.bootable { "bootable, " } else { "" },
            b.emulation,
            b.load_sectors,
            b.image_block,
            human_bytes(b.image_bytes)
        );
    }
    for m in &i.mbr {
        let _ = writeln!(
            o,
            "MBR partition {}: type {:#04x} ({}){}, start {} size {}",
            m.index,
            m.type_code,
            m.type_name,
            if m.bootable { ", bootable" } else { "" },
            m.start_bytes,
            human_bytes(m.size_bytes)
        );
    }
    if let Some(g) = &i.gpt {
        let _ = writeln!(
            o,
            "GPT: disk GUID {}; primary header {}; backup header {}",
            g.disk_guid,
            if g.primary.valid { "valid" } else { "INVALID" },
            if g.backup.valid { "valid" } else { "INVALID" }
        );
    }
    partitions(o, &i.partitions);
    esp_files(o, &i.partitions);
    for f in &i.live_files {
        let _ = writeln!(
            o,
            "/{}: {} ({} bytes)",
            f.path,
            human_bytes(f.size_bytes),
            f.size_bytes
        );
    }
    if let Some(v) = &i.kernel_version {
        let _ = writeln!(o, "kernel version: {v}");
    }
    if let Some(s) = &i.squashfs {
        o.push_str("/live/filesystem.squashfs: ");
        superblock(o, s);
    }
    grub(o, i.grub.as_ref());
    match &i.seed {
        None => {
            let _ = writeln!(o, "cloud-init seed: none");
        }
        Some(s) => {
            let _ = writeln!(o, "cloud-init seed ({}):", s.datasource);
            for f in &s.files {
                let _ = writeln!(o, "  /{} ({} bytes)", f.path, f.size_bytes);
            }
        }
    }
}

fn squashfs(o: &mut String, s: &SquashfsReport) {
    superblock(o, &s.superblock);
    let _ = writeln!(
        o,
        "{} entries: {} regular files, {} directories",
        s.entry_count, s.regular_file_count, s.directory_count
    );
    if !s.kernel_versions.is_empty() {
        let _ = writeln!(o, "kernel modules for: {}", s.kernel_versions.join(", "));
    }
}

fn superblock(o: &mut String, s: &SuperblockFacts) {
    let _ = writeln!(
        o,
        "squashfs {}: compression {}, block size {}, {} inodes, {} bytes used, made at {} (Unix time)",
        s.version,
        s.compression,
        human_bytes(u64::from(s.block_size_bytes)),
        s.inode_count,
        s.bytes_used,
        s.mkfs_time
    );
    let _ = writeln!(o, "flags: {}", s.flags.join(", "));
}
