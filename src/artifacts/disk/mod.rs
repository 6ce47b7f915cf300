//! Partitioned, bootable disk images (qcow2 or raw) from a configured rootfs
//! and a profile's disk layout, made in user space: no loop devices, nbd,
//! mounts, parted or grub-install.
//!
//! ```text
//!  plan      DiskPlan: offsets, GUIDs, filesystem UUIDs, fstab     (pure)
//!  check     measure the tree per filesystem; refuse what won't fit (reads only)
//!  grub      grub-mkimage: core.img (BIOS), BOOTX64.EFI (UEFI)     (temp files)
//!  split     one source tree per filesystem: hard links, new dirs  (scratch)
//!  add       /etc/fstab, /etc/default/grub, /boot/grub/*  into the split trees
//!  mkfs      mke2fs -d per ext4 filesystem, FAT for the ESP, swap header
//!  boot      boot.img into the MBR, core.img into the BIOS boot partition
//!  assemble  CompositeDisk: GPT head + parts + GPT tail → qcow2 / sparse raw
//! ```
//!
//! Everything that can be wrong with the inputs (layout, sizes, a missing
//! kernel, the grub.cfg template) is found before the first byte of the
//! image is written, and the image appears at its path only when complete
//! ([`AtomicOutput`]). The rootfs is only read: files osforge adds go into
//! the split trees (see [`tree`]), never through a hard link.

pub mod boot;
pub mod image;
pub mod plan;
pub mod tree;

use crate::blockcache::{self, BlockStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::boot::{bios, disk as grub_disk};
use crate::error::InputError;
use crate::formats::Progress;
use crate::formats::ext4::{self, Ext4Options, Usage};
use crate::formats::gpt::ProtectiveMbr;
use crate::formats::qcow2::{CompositeDisk, Extent, ExtentData};
use crate::formats::swap;
use crate::profile::{ByteSize, Disk, Filesystem, PartitionType};
use crate::util::output::AtomicOutput;
pub use image::ImageFormat;
pub use plan::{DiskPlan, Ids, PlannedPartition};

/// qcow2's cluster compression for a profile's `disk.compression`.
pub fn profile_compression(
    c: crate::profile::DiskCompression,
) -> crate::formats::qcow2::Compression {
    use crate::formats::qcow2::Compression;
    use crate::profile::DiskCompression;
    match c {
        DiskCompression::None => Compression::None,
        DiskCompression::Zlib => Compression::Zlib,
        DiskCompression::Zstd => Compression::Zstd,
    }
}

/// Sizes the error messages suggest are rounded up to this.
const SUGGEST_STEP_BYTES: u64 = 1 << 20;
/// Room the ESP keeps beyond its files: FAT tables, directories, slack.
const ESP_OVERHEAD_PERCENT: u64 = 10;

/// Everything one disk image is made from.
pub struct DiskImage<'a> {
    /// The configured tree; read only.
    pub rootfs: &'a Path,
    pub disk: &'a Disk,
    pub profile: &'a str,
    pub hostname: &'a str,
    /// The boot menu's entry.
    pub title: &'a str,
    /// The kernel command line, unquoted.
    pub kernel_cmdline: &'a str,
    /// `grub-disk.cfg.tera`.
    pub grub_template: &'a Path,
    pub ids: Ids,
    /// `SOURCE_DATE_EPOCH`: filesystem times of what osforge creates.
    pub fake_time: Option<u64>,
    /// Where the scratch directory goes; on the rootfs's filesystem, files
    /// are hard-linked rather than copied.
    pub scratch_parent: &'a Path,
    /// GRUB's lib dir; by default the image's own, else the host's.
    pub grub_lib_dir: Option<&'a Path>,
    /// Compression threads for qcow2 outputs.
    pub jobs: usize,
    /// Where qcow2 outputs look compressed clusters up first.
    pub block_cache: Option<Arc<BlockStore>>,
}

/// One image file to write; a disk can be written in several formats from
/// the same filesystems, so a qcow2 and a raw image of one build hold the
/// same bytes.
#[derive(Debug, Clone)]
pub struct Output {
    pub format: ImageFormat,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputSummary {
    pub path: PathBuf,
    pub format: &'static str,
    pub file_size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_cache: Option<blockcache::Stats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionSummary {
    pub number: u32,
    pub name: String,
    pub mount: Option<String>,
    pub filesystem: Filesystem,
    pub start_bytes: u64,
    pub size_bytes: u64,
    /// How fstab names it (`UUID=...`); none for the BIOS boot partition.
    pub fstab_source: Option<String>,
    pub part_uuid: String,
    /// Bytes of file data the tree put on it.
    pub content_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskSummary {
    pub outputs: Vec<OutputSummary>,
    pub virtual_size_bytes: u64,
    pub kernel: String,
    pub partitions: Vec<PartitionSummary>,
    /// Seconds per step, in order.
    pub steps: Vec<(String, f64)>,
}

/// Makes the images in `outputs`; `progress` is told about every byte of
/// the virtual disk once per output.
pub fn write(
    img: &DiskImage,
    outputs: &[Output],
    progress: Arc<dyn Progress>,
) -> anyhow::Result<DiskSummary> {
    let mut steps = Steps::start();
    let plan = DiskPlan::new(img.disk, &img.ids)?;
    let table = plan
        .partition_table()
        .context("planning the partition table")?;
    let kernel = boot::kernel_paths(img.rootfs, &plan)?;
    let bios_part = plan.of_kind(PartitionType::BiosGrub);
    let esp = plan.of_kind(PartitionType::Esp);
    let (want_bios, want_uefi) = (bios_part.is_some(), esp.is_some());
    let secure_boot = img.disk.secure_boot;
    if secure_boot && !want_uefi {
        return Err(input(format!(
            "profile {}: disk.secure_boot is set but the disk has no esp partition to boot from",
            img.profile
        )));
    }
    if !want_bios && !want_uefi {
        return Err(input(format!(
            "profile {}: the disk has neither a bios_grub nor an esp partition, so nothing could boot it",
            img.profile
        )));
    }
    let lib_dir = boot::grub_lib_dir(img.rootfs, img.grub_lib_dir, want_bios, want_uefi)?;
    let cmdline_menu = boot::Menu {
        profile: img.profile,
        hostname: img.hostname,
        title: img.title,
        cmdline: img.kernel_cmdline,
        kernel: &kernel,
    };
    let grub_cfg = boot::render_grub_cfg(img.grub_template, &plan, &cmdline_menu)
        .map_err(|e| input(format!("{e:#}")))?;
    steps.done("plan");

    let boot_fs = plan.owner_of(boot::GRUB_DIR);
    let grub_dir = format!("/{}", boot_fs.1);
    let images = grub_disk::build(&grub_disk::DiskGrubOptions {
        lib_dir: &lib_dir,
        boot_fs_uuid: boot_fs.0.fs_uuid,
        grub_dir: &grub_dir,
        bios: want_bios,
        // With Secure Boot the signed GRUB replaces the one built here.
        uefi: want_uefi && !secure_boot,
        mkimage: None,
    })?;
    let stub = grub_disk::early_config(boot_fs.0.fs_uuid, &grub_dir);
    let esp_files = boot::uefi_files(img.rootfs, images.efi_loader.as_deref(), secure_boot, &stub)?;
    let mut esp_files_bytes = 0;
    for (_, f) in &esp_files {
        esp_files_bytes += f.len_bytes()?.next_multiple_of(ext4::BLOCK_BYTES);
    }
    let embedded = match (bios_part, &images.boot_img, &images.core_img) {
        (Some(p), Some(boot_img), Some(core_img)) => Some(
            bios::embed(boot_img, core_img, p.first_lba(), p.sectors())
                .map_err(|e| input(format!("partition '{}' (bios_grub): {e}", p.name)))?,
        ),
        _ => None,
    };
    steps.done("grub-mkimage");

    let mut usage = tree::measure(img.rootfs, &plan)?;
    // What osforge adds: GRUB's files on /boot's filesystem, fstab and
    // /etc/default/grub on root's (a block each at most).
    usage
        .entry(boot_fs.0.number)
        .or_default()
        .add(boot::grub_files_usage(
            &lib_dir,
            &images,
            grub_cfg.len() as u64,
        )?);
    usage
        .entry(boot_fs.0.number)
        .or_default()
        .add(boot::copies_usage(&kernel)?);
    usage.entry(plan.root().number).or_default().add(Usage {
        data_bytes: 2 * ext4::BLOCK_BYTES,
        inodes: 2,
    });
    check_sizes(img, &plan, &usage, esp_files_bytes)?;
    steps.done("measure");

    // Nothing was written so far; from here on, scratch files and the output.
    let creating = crate::util::cleanup::Creating::start();
    let scratch = tempfile::Builder::new()
        .prefix(".osforge-disk-")
        .tempdir_in(img.scratch_parent)
        .with_context(|| {
            format!(
                "creating a scratch directory in {}",
                img.scratch_parent.display()
            )
        })?;
    let _registered = crate::util::cleanup::Registered::new(scratch.path());
    drop(creating);
    let trees_dir = scratch.path().join("trees");
    std::fs::create_dir(&trees_dir)?;
    let trees = tree::SplitTree::build(img.rootfs, &plan, &trees_dir)
        .context("splitting the rootfs by mount point")?;
    trees.put_file(
        &plan,
        "/etc/fstab",
        plan.fstab(img.profile).as_bytes(),
        0o644,
    )?;
    trees.put_file(
        &plan,
        "/etc/default/grub",
        boot::default_grub(img.profile, img.kernel_cmdline).as_bytes(),
        0o644,
    )?;
    trees.put_file(
        &plan,
        &format!("{}/grub.cfg", boot::GRUB_DIR),
        grub_cfg.as_bytes(),
        0o644,
    )?;
    boot::install_grub_files(&trees, &plan, &lib_dir, &images)?;
    for (image_path, file) in &kernel.copies {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        trees.put_file(&plan, image_path, &bytes, 0o644)?;
    }
    steps.done("split");

    let parts = make_filesystems(img, &plan, &trees, scratch.path(), &esp_files)?;
    // Dropped before `scratch`, which then finds the trees gone.
    let trees_removal = crate::util::cleanup::BackgroundRemoval::start(trees_dir);
    steps.done("mkfs");

    let mbr = ProtectiveMbr {
        boot_code: embedded
            .as_ref()
            .map_or([0; bios::MBR_CODE_BYTES], |e| e.mbr_code),
        disk_signature: plan.disk_signature,
    };
    let gpt = table.to_bytes(&mbr);
    let mut extents = vec![
        Extent {
            offset_bytes: 0,
            data: ExtentData::Bytes(gpt.head),
        },
        Extent {
            offset_bytes: gpt.tail_offset_bytes,
            data: ExtentData::Bytes(gpt.tail),
        },
    ];
    if let (Some(p), Some(e)) = (bios_part, embedded) {
        extents.push(Extent {
            offset_bytes: p.start_bytes,
            data: ExtentData::Bytes(e.core_area),
        });
    }
    extents.extend(parts);
    let composite = CompositeDisk::new(plan.size_bytes, extents).context("assembling the disk")?;
    // Every output is complete before any is moved into place.
    let mut written = Vec::new();
    for out in outputs {
        let path = &out.path;
        let mut file = AtomicOutput::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let (file_size_bytes, block_cache) = image::write(
            &composite,
            out.format,
            img.jobs,
            img.block_cache.as_ref(),
            file.file(),
            Arc::clone(&progress),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        written.push((
            file,
            OutputSummary {
                path: path.clone(),
                format: out.format.extension(),
                file_size_bytes,
                block_cache,
            },
        ));
        steps.done(out.format.extension());
    }
    let mut summaries = Vec::new();
    for (file, summary) in written {
        file.commit()
            .with_context(|| format!("moving {} into place", summary.path.display()))?;
        summaries.push(summary);
    }
    // Timed as a step of its own: unlinking the trees and the filesystem
    // images is a fixed part of every rebuild.
    drop(trees_removal);
    drop(scratch);
    steps.done("remove scratch");

    Ok(DiskSummary {
        outputs: summaries,
        virtual_size_bytes: plan.size_bytes,
        kernel: kernel.image_kernel.clone(),
        partitions: plan
            .partitions
            .iter()
            .map(|p| PartitionSummary {
                number: p.number,
                name: p.name.clone(),
                mount: p.mount.clone(),
                filesystem: p.filesystem,
                start_bytes: p.start_bytes,
                size_bytes: p.size_bytes,
                fstab_source: (p.filesystem != Filesystem::None).then(|| p.fstab_source()),
                part_uuid: p.part_guid.to_string(),
                content_bytes: usage.get(&p.number).map_or(0, |u| u.data_bytes),
            })
            .collect(),
        steps: steps.list,
    })
}

/// Refuses, before anything is written, filesystems their files do not fit
/// in, saying how big the disk (or partition) must be.
fn check_sizes(
    img: &DiskImage,
    plan: &DiskPlan,
    usage: &BTreeMap<u32, Usage>,
    esp_files_bytes: u64,
) -> anyhow::Result<()> {
    for p in &plan.partitions {
        let need = usage.get(&p.number).copied().unwrap_or_default();
        let mount = p.mount.as_deref().unwrap_or("-");
        match p.filesystem {
            Filesystem::Ext4 if !ext4::fits(need, p.size_bytes) => {
                let min = ext4::min_size_bytes(need, SUGGEST_STEP_BYTES);
                let spec = &img.disk.partitions[p.number as usize - 1];
                let hint = if spec.size == crate::profile::PartitionSize::Rest {
                    let disk_min =
                        (img.disk.size.0 - p.size_bytes + min).next_multiple_of(SUGGEST_STEP_BYTES);
                    format!(
                        "make disk.size at least {} (it is {})",
                        ByteSize(disk_min),
                        img.disk.size
                    )
                } else {
                    format!("make its size at least {}", ByteSize(min))
                };
                return Err(input(format!(
                    "profile {}: partition '{}' ({mount}) is {} but its files need {} of ext4 ({} of data, {} inodes); {hint}",
                    img.profile,
                    p.name,
                    ByteSize(p.size_bytes),
                    ByteSize(min),
                    crate::util::size::human_bytes(need.data_bytes),
                    need.inodes
                )));
            }
            Filesystem::Vfat => {
                let content = need.data_bytes + esp_files_bytes;
                let min = (content + content * ESP_OVERHEAD_PERCENT / 100 + SUGGEST_STEP_BYTES)
                    .next_multiple_of(SUGGEST_STEP_BYTES);
                if min > p.size_bytes {
                    return Err(input(format!(
                        "profile {}: partition '{}' ({mount}) is {} but its files need about {}; make its size at least {}",
                        img.profile,
                        p.name,
                        ByteSize(p.size_bytes),
                        crate::util::size::human_bytes(content),
                        ByteSize(min)
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The extents of every filesystem: ext4 images made in parallel, the ESP,
/// swap headers.
fn make_filesystems(
    img: &DiskImage,
    plan: &DiskPlan,
    trees: &tree::SplitTree,
    scratch: &Path,
    esp_files: &[(String, boot::EspFile)],
) -> anyhow::Result<Vec<Extent>> {
    let results: Vec<anyhow::Result<Option<Extent>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .partitions
            .iter()
            .map(|p| {
                scope.spawn(move || {
                    crate::util::cleanup::checkpoint();
                    make_filesystem(img, p, trees, scratch, esp_files)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a filesystem builder panicked")))
            })
            .collect()
    });
    let mut extents = Vec::new();
    for r in results {
        extents.extend(r?);
    }
    Ok(extents)
}

fn make_filesystem(
    img: &DiskImage,
    p: &PlannedPartition,
    trees: &tree::SplitTree,
    scratch: &Path,
    esp_files: &[(String, boot::EspFile)],
) -> anyhow::Result<Option<Extent>> {
    let what = || {
        format!(
            "partition '{}' ({})",
            p.name,
            p.mount.as_deref().unwrap_or("unmounted")
        )
    };
    let file_extent = |path: &PathBuf| -> anyhow::Result<Extent> {
        let file = std::fs::File::open(path)?;
        Ok(Extent {
            offset_bytes: p.start_bytes,
            data: ExtentData::File {
                file,
                offset_bytes: 0,
                len_bytes: p.size_bytes,
            },
        })
    };
    match (p.kind, p.filesystem) {
        (_, Filesystem::Ext4) => {
            let path = scratch.join(format!("p{}.ext4", p.number));
            let opts = Ext4Options {
                size_bytes: p.size_bytes,
                uuid: p.fs_uuid,
                hash_seed: p.hash_seed,
                label: Some(p.label()),
                fake_time: img.fake_time,
                mke2fs: None,
            };
            ext4::make(trees.root(p.number), &path, &opts).map_err(|e| match e {
                ext4::Error::NoSpace { .. } => input(format!("{}: {e}", what())),
                e => anyhow::Error::new(e).context(what()),
            })?;
            Ok(Some(file_extent(&path)?))
        }
        (_, Filesystem::Vfat) => {
            let path = scratch.join(format!("p{}.fat", p.number));
            let file = std::fs::File::create_new(&path)?;
            file.set_len(p.size_bytes)?;
            let files = if p.kind == PartitionType::Esp {
                esp_files
            } else {
                &[]
            };
            let fat = boot::esp_image(
                trees.root(p.number),
                files,
                &p.label(),
                p.fat_serial(),
                img.fake_time.map(|t| t as i64),
            )?;
            fat.write_at(
                image::Window::new(file, p.start_bytes),
                p.start_bytes,
                p.size_bytes,
            )
            .with_context(what)?;
            Ok(Some(file_extent(&path)?))
        }
        (_, Filesystem::Swap) => {
            let header = swap::header(p.size_bytes, p.fs_uuid, &p.label()).with_context(what)?;
            Ok(Some(Extent {
                offset_bytes: p.start_bytes,
                data: ExtentData::Bytes(header),
            }))
        }
        // The BIOS boot partition is filled by the caller; others stay empty.
        (_, Filesystem::None) => Ok(None),
    }
}

fn input(message: String) -> anyhow::Error {
    anyhow::Error::new(InputError(message))
}

/// Seconds per step, for the summary.
struct Steps {
    started: Instant,
    list: Vec<(String, f64)>,
}

impl Steps {
    fn start() -> Steps {
        Steps {
            started: Instant::now(),
            list: Vec::new(),
        }
    }

    fn done(&mut self, name: &str) {
        crate::util::cleanup::checkpoint();
        let now = Instant::now();
        self.list
            .push((name.to_string(), (now - self.started).as_secs_f64()));
        self.started = now;
    }
}
