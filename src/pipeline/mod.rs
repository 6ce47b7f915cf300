//! The build pipeline: profile → rootfs → configure → ansible → artifacts → publish.
//!
//! [`build_image`] reads as the recipe. Each stage takes a small typed input
//! ([`plan`] translates the profile), and the expensive ones are cached by a
//! key over exactly their inputs ([`cache`]); keys chain, so a change to the
//! packages rebuilds everything after the bootstrap, while a `--var` that only
//! reaches cloud-init or the kernel command line rebuilds nothing but the
//! per-host artifact. Each artifact gets a manifest and an SBOM beside it
//! ([`crate::manifest`]). Everything the user got wrong (profile, templates,
//! command line, hosts file) is found before the first stage runs. With
//! `--hosts`, every host's artifacts are made from the same stages ([`hosts`]).

mod ansible;
mod blocks;
pub mod cache;
pub mod hosts;
mod images;
mod layers;
mod lockfile;
mod netboot;
mod oci;
pub mod plan;
mod push;
pub mod remote;
mod report;
mod sources;
mod stage;

pub(crate) use sources::file_digest;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::artifacts::disk;
use crate::artifacts::live_iso::{self, LiveIso, Seed};
use crate::blockcache::BlockStore;
use crate::formats::Progress;
use crate::formats::squashfs::{self, SquashfsWriter, source::DirectorySource};
use crate::manifest::{DebPackage, ManifestInputs, ProfileRecord, StageRecord};
use crate::profile::{HostFiles, HostRender, HostsFile, Profile, SearchPath};
use crate::rootfs::{self, Network};
use crate::util::output::AtomicOutput;
use crate::util::progress::Bar;
pub use blocks::open_block_cache;
use blocks::{prune_block_cache, warn_block_cache};
use cache::{Cache, StageKey};
use hosts::{HostReport, Staging, Target};
pub use report::{Artifact, BuildReport, StageReport};
use stage::cached_stage;

/// Bumped when a stage's code changes what it produces, so old cache
/// entries are not reused.
const CONFIGURE_FORMAT: u32 = 3;
/// 3: fragment blocks end at content-defined points; incompressible blocks
/// are stored raw untried. 4: a sparse file's tail in a hole is stored as
/// zeros (images before held another file's bytes there).
const SQUASHFS_FORMAT: u32 = 4;

/// Where live-boot mounts the medium it booted from, CD or USB alike.
const LIVE_MEDIUM: &str = "/run/live/medium";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactType {
    Iso,
    Qcow2,
    Raw,
    /// The configured rootfs as an OCI image archive (`NAME.oci.tar`).
    Oci,
    /// Kernel, initrd, squashfs, iPXE script, GRUB config and seed for
    /// booting the live system over HTTP ([`netboot`]).
    Netboot,
}

impl ArtifactType {
    /// qcow2 and raw: written from one partitioned disk.
    fn is_disk(self) -> bool {
        matches!(self, ArtifactType::Qcow2 | ArtifactType::Raw)
    }
}

impl FromStr for ArtifactType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iso" => Ok(ArtifactType::Iso),
            "qcow2" | "qcow" => Ok(ArtifactType::Qcow2),
            "raw" => Ok(ArtifactType::Raw),
            "oci" => Ok(ArtifactType::Oci),
            "netboot" => Ok(ArtifactType::Netboot),
            other => Err(format!(
                "unknown image type '{other}' (expected iso, qcow2, raw, oci or netboot)"
            )),
        }
    }
}

impl fmt::Display for ArtifactType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactType::Iso => "iso",
            ArtifactType::Qcow2 => "qcow2",
            ArtifactType::Raw => "raw",
            ArtifactType::Oci => "oci",
            ArtifactType::Netboot => "netboot",
        })
    }
}

/// Everything one build needs, resolved from the command line.
pub struct BuildRequest {
    pub profile: Profile,
    pub search: SearchPath,
    pub types: Vec<ArtifactType>,
    pub output_dir: PathBuf,
    /// The artifacts' file name without extension (default: the profile name).
    pub name: String,
    pub cmdline_append: Option<String>,
    /// The host's own network and user-data files (`--network-data`, `--user-data`).
    pub host_files: HostFiles,
    pub mirror: Option<String>,
    pub network: Network,
    pub rebuild: bool,
    pub cache: Cache,
    /// The cache's block store, unless `--no-block-cache`.
    pub block_cache: Option<Arc<BlockStore>>,
    pub jobs: usize,
    pub source_date_epoch: Option<u64>,
    /// `--lock`: the versions to install, checked after the build.
    pub lock: Option<crate::manifest::lock::LockFile>,
    /// `--hosts`: one set of artifacts per host, named after it, instead of
    /// one named `name`; `cmdline_append` and `host_files` apply to each.
    pub hosts: Option<HostsFile>,
    /// `--signing-key`/`--signing-cert`: the ISO's UEFI loader is a UKI
    /// signed with the site's key. Paths only; the key is never read here.
    pub signing: Option<crate::boot::uki::SigningKey>,
    /// `--cache-remote`: stages missing locally are looked up there, and
    /// stages built here are uploaded ([`remote`]).
    pub remote_cache: Option<remote::RemoteCache>,
    /// `--publish s3://...`: where the build's files are uploaded once they
    /// are in the output directory.
    pub publish_s3: Vec<crate::s3::publish::PublishTarget>,
    /// `--netboot-url`: the HTTP folder a `--type netboot` set is served from.
    pub netboot_url: Option<String>,
    /// `--push`, `--publish registry=`: the registries the `--type oci`
    /// image goes to after the output directory.
    pub publish: Vec<crate::publish::PublishTarget>,
    /// `--authfile`, `--tls-verify`: for registry targets that do not set their own.
    pub push_authfile: Option<PathBuf>,
    pub push_tls_verify: bool,
}

/// Compression threads: what `--jobs` asked for, else one per CPU; at least one.
pub fn jobs_or_default(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// What the user sees of the build: one line per stage, unless quiet.
pub struct Log {
    pub quiet: bool,
    pub progress: bool,
}

impl Log {
    pub fn info(&self, message: &str) {
        // Scrubbed even when quiet: a secret that got this far fails the build.
        let message = crate::util::redact::scrub_log(message);
        if !self.quiet {
            crate::util::progress::eprint_line(&format!("osforge: {message}"));
        }
    }
}

/// A cached stage's output directory and whether it came from the cache.
struct StageOutput {
    dir: PathBuf,
    key: String,
    /// "bootstrap base", "layer data-plane", "configure": for the log.
    label: String,
}

pub fn build_image(req: &BuildRequest, log: &Log) -> anyhow::Result<BuildReport> {
    let started = Instant::now();
    let mut stages = Vec::new();
    let targets = hosts::targets(req)?;
    check_disk_inputs(req)?;
    check_architecture(req)?;
    netboot::check_inputs(req, &targets)?;
    push::check_inputs(req)?;
    let playbooks = ansible::prepare(req)?;
    // Before the first stage: an output directory osforge cannot write fails
    // now. The staging folder itself comes only with the artifacts, so that
    // a build killed during the stages leaves nothing in the output directory.
    Staging::check_writable(&req.output_dir)?;
    let images = images::prepare(req, log)?;
    let (rootfs, source) = layers::build_rootfs(req, log, &mut stages)?;
    let configured = configure_os(req, &rootfs, log, &mut stages)?;
    let configured = ansible::run_playbooks(req, playbooks.as_ref(), configured, log, &mut stages)?;
    let (configured, baked_images) =
        images::bake(req, images.as_ref(), configured, log, &mut stages)?;
    let packages = list_packages(&configured, log)?;
    lockfile::check(req, &packages)?;
    let staging = Staging::new(&req.output_dir)?;
    let mut by_host = hosts::make_artifacts(
        req,
        &targets,
        staging.dir(),
        &configured,
        &packages,
        log,
        &mut stages,
    )?;
    let artifacts: Vec<&Artifact> = by_host.iter().flatten().collect();
    write_checksums(&artifacts)?;
    write_manifests(req, &stages, &packages, &artifacts)?;
    lockfile::write(req, &rootfs, source, &packages, staging.dir(), log)?;
    if crate::util::redact::secret_leaked() {
        anyhow::bail!(
            "a secret's value was about to be written to the build's log (shown there as ***); the images are not published: keep secret variables out of values osforge reports (hostname, unit and file names)"
        );
    }
    let files = staging.publish(&mut by_host)?;
    let pushed = push::push_all(req, &by_host, log)?;
    let published =
        crate::s3::publish::publish_all(&req.publish_s3, &req.output_dir, &files, &|l| {
            log.info(l)
        })?;
    prune_block_cache(req, log)?;
    let hosts: Vec<HostReport> = targets
        .into_iter()
        .zip(by_host)
        .map(|(t, artifacts)| HostReport {
            name: t.name,
            hostname: t.host.hostname.clone(),
            kernel_cmdline: t.host.kernel_cmdline.to_string(),
            artifacts,
        })
        .collect();
    // Without --hosts the report keeps its one-host fields.
    let one = hosts.first().filter(|_| req.hosts.is_none());
    Ok(BuildReport {
        profile: req.profile.name.clone(),
        cache_dir: req.cache.root().to_path_buf(),
        hostname: one.map(|h| h.hostname.clone()),
        kernel_cmdline: one.map(|h| h.kernel_cmdline.clone()),
        stages,
        artifacts: hosts.iter().flat_map(|h| h.artifacts.clone()).collect(),
        hosts,
        pushed,
        published,
        images: baked_images,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Renders the per-host files first: a template or command-line mistake must
/// fail before minutes of bootstrapping, and leave nothing behind.
fn render_host(req: &BuildRequest) -> anyhow::Result<HostRender> {
    req.profile
        .render_host_with(req.cmdline_append.as_deref(), &req.host_files)
        .map_err(|e| e.into_input_error())
}

fn configure_os(
    req: &BuildRequest,
    rootfs: &StageOutput,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<StageOutput> {
    let settings = plan::os_settings(&req.profile);
    let key = StageKey::new(
        "configure",
        &serde_json::json!({ "format": CONFIGURE_FORMAT, "rootfs": rootfs.key, "os": settings }),
    );
    let tar = rootfs.dir.join("rootfs.tar");
    cached_stage(req, &key, "configure", Some(rootfs), log, stages, |dir| {
        let root = dir.join("root");
        rootfs::unpack(&tar, &root)?;
        let report =
            crate::osconfig::apply(&root, &settings).context("configuring the image (osconfig)")?;
        Ok(format!("osconfig: {}", report.actions.join("; ")))
    })
}

/// The packages installed in the configured rootfs, for the manifests and
/// SBOMs. Read from the rootfs itself on every build, cached or not: the
/// configure stage's entry is the rootfs as it was written, so a cache hit
/// lists exactly what the image holds, and entries made before manifests
/// existed need no rebuild.
fn list_packages(configured: &StageOutput, log: &Log) -> anyhow::Result<Vec<DebPackage>> {
    let packages = crate::manifest::dpkg::installed_packages(&configured.dir.join("root"))
        .context("listing the image's packages for its SBOM")?;
    log.info(&format!(
        "packages: {} installed (from /var/lib/dpkg/status)",
        packages.len()
    ));
    Ok(packages)
}

/// What a reproducible disk's GUIDs and UUIDs derive from: what the image
/// holds (the profile's inputs and the packages installed), not how it was
/// built, so that a `--lock` replay or a rootless build of the same image
/// gets the same ids. (The stage keys differ between those: a lock's pins are
/// part of them.) A change made only by an Ansible playbook keeps the ids.
fn image_identity(req: &BuildRequest, packages: &[DebPackage], epoch: u64) -> String {
    let installed: Vec<(&str, &str, &str)> = packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.architecture.as_str()))
        .collect();
    let json = serde_json::json!({
        "profile": req.profile.name,
        "rootfs": req.profile.rootfs_inputs().fingerprint(),
        "os": req.profile.os_inputs().fingerprint(),
        "packages": installed,
        "epoch": epoch,
    });
    crate::pipeline::cache::StageKey::new("disk-ids", &json).key
}

/// Another architecture than amd64 builds as an OCI image or a netboot set:
/// the boot loaders osforge writes into ISOs and disks are x86's (BIOS
/// GRUB, x86_64 UEFI). One the machine cannot run needs qemu-user.
fn check_architecture(req: &BuildRequest) -> anyhow::Result<()> {
    let arch = req.profile.distro.arch.as_str();
    let bootable = [ArtifactType::Iso, ArtifactType::Qcow2, ArtifactType::Raw];
    if arch != "amd64"
        && let Some(kind) = req.types.iter().find(|t| bootable.contains(t))
    {
        crate::bail_input!(
            "profile {} is for {arch}: osforge writes {kind} boot loaders for amd64 only (BIOS GRUB, x86_64 UEFI); build {arch} as --type oci or netboot",
            req.profile.name
        );
    }
    rootfs::foreign::check_can_run(arch).map_err(anyhow::Error::msg)
}

/// Disk images need the profile's `disk:` section and the grub.cfg
/// template; both are checked before the first stage runs.
fn check_disk_inputs(req: &BuildRequest) -> anyhow::Result<()> {
    if !req.types.iter().any(|t| t.is_disk()) {
        return Ok(());
    }
    if req.profile.disk.is_none() {
        crate::bail_input!(
            "profile {} has no disk: section, so it cannot be built as qcow2 or raw (inherit qcow2-host, or add one)",
            req.profile.name
        );
    }
    let template = disk::boot::find_grub_template(&req.search.template_dirs)
        .map_err(|e| anyhow::Error::new(crate::error::InputError(format!("{e:#}"))))?;
    disk::boot::check_grub_template(&template)
        .map_err(|e| anyhow::Error::new(crate::error::InputError(format!("{e:#}"))))
}

/// The disk images (qcow2 and/or raw) of this host, in `dir`: the configured
/// rootfs split onto the profile's partitions, GRUB for BIOS and UEFI. Not
/// cached: they are per host (kernel command line) and the caches behind
/// them are what is slow.
#[allow(clippy::too_many_arguments)]
fn make_disk(
    req: &BuildRequest,
    target: &Target,
    dir: &Path,
    configured: &StageOutput,
    packages: &[DebPackage],
    types: &[ArtifactType],
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<Vec<Artifact>> {
    let started = Instant::now();
    let layout = req
        .profile
        .disk
        .as_ref()
        .context("the profile has no disk: section")?;
    let outputs: Vec<disk::Output> = types
        .iter()
        .map(|kind| {
            let format = match kind {
                ArtifactType::Raw => disk::ImageFormat::Raw,
                _ => disk::ImageFormat::Qcow2 {
                    compression: disk::profile_compression(layout.compression),
                    level: None,
                },
            };
            disk::Output {
                format,
                path: dir.join(format!("{}.{}", target.name, format.extension())),
            }
        })
        .collect();
    let template = disk::boot::find_grub_template(&req.search.template_dirs)?;
    // Beside the cache's entries: the split trees are hard links into the
    // configured rootfs, which needs the same filesystem.
    let scratch = req.cache.root().join("tmp");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let host = &target.host;
    let title = format!("{} ({})", req.profile.description, host.hostname);
    let cmdline = host.kernel_cmdline.to_string();
    let image = disk::DiskImage {
        rootfs: &configured.dir.join("root"),
        disk: layout,
        profile: &req.profile.name,
        hostname: &host.hostname,
        title: &title,
        kernel_cmdline: &cmdline,
        grub_template: &template,
        ids: match req.source_date_epoch {
            Some(epoch) => disk::Ids::Derived(image_identity(req, packages, epoch)),
            None => disk::Ids::Random,
        },
        fake_time: req.source_date_epoch,
        scratch_parent: &scratch,
        grub_lib_dir: None,
        jobs: req.jobs,
        // mke2fs -d packs files one after another, so one package added moves
        // every cluster after it by whole blocks: zlib clusters are reused a
        // 4 KiB segment at a time (crate::blockcache::segments).
        block_cache: req.block_cache.clone(),
    };
    let bar = Arc::new(Bar::bytes(
        "disk",
        layout.size.0 * outputs.len() as u64,
        log.progress,
    ));
    let summary = disk::write(
        &image,
        &outputs,
        Arc::clone(&bar) as Arc<dyn crate::formats::Progress>,
    );
    bar.finish();
    let summary = summary?;
    let seconds = started.elapsed().as_secs_f64();
    let steps: Vec<String> = summary
        .steps
        .iter()
        .map(|(name, s)| format!("{name} {s:.1} s"))
        .collect();
    let files: Vec<String> = summary
        .outputs
        .iter()
        .map(|o| {
            format!(
                "{} ({})",
                final_path(req, &o.path).display(),
                crate::util::size::human_bytes(o.file_size_bytes)
            )
        })
        .collect();
    let block_cache = summary.outputs.iter().find_map(|o| o.block_cache.clone());
    let detail = format!(
        "{}, {} virtual; {}{}",
        files.join(", "),
        crate::util::size::human_bytes(summary.virtual_size_bytes),
        steps.join(", "),
        block_cache
            .as_ref()
            .map_or(String::new(), |s| format!("; {}", s.describe("clusters")))
    );
    log.info(&format!("disk: wrote {detail} in {seconds:.1} s"));
    warn_block_cache(log, block_cache.as_ref());
    stages.push(StageReport {
        block_cache,
        ..StageReport::artifact("disk", Some(&target.name), seconds, detail)
    });
    types
        .iter()
        .zip(&outputs)
        .map(|(kind, out)| describe_artifact(*kind, out.path.clone()))
        .collect()
}

/// The live ISO is its own cloud-init seed. cloud-init reads a seed directory
/// before it looks for devices, and libblkid's device scan (which ds-identify
/// and `blkid -t LABEL=…` use) skips whole disks that have partitions, which
/// is what a hybrid ISO on a USB stick is. So the live root links the seed
/// directory of its datasource to the medium: found from CD and USB alike,
/// while the volume label still serves real config drives.
fn live_seed_link(req: &BuildRequest) -> (&'static str, &'static str) {
    match req.profile.cloud_init.datasource {
        crate::profile::Datasource::Configdrive => ("var/lib/cloud/seed/config_drive", LIVE_MEDIUM),
        crate::profile::Datasource::Nocloud => ("var/lib/cloud/seed/nocloud", LIVE_MEDIUM),
    }
}

fn make_squashfs(
    req: &BuildRequest,
    configured: &StageOutput,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<PathBuf> {
    let s = &req.profile.iso.squashfs;
    let (seed_link, seed_target) = live_seed_link(req);
    let key = StageKey::new(
        "squashfs",
        &serde_json::json!({
            "format": SQUASHFS_FORMAT,
            "configure": configured.key,
            "compression": s.compression.name(),
            "level": s.level,
            "block_size": s.block_size.0,
            "source_date_epoch": req.source_date_epoch,
            // The kernel and initrd travel beside the squashfs on the ISO.
            "exclude": ["boot/*"],
            "seed_link": [seed_link, seed_target],
        }),
    );
    let root = configured.dir.join("root");
    let jobs = req.jobs;
    let mut block_cache = None;
    let out = cached_stage(
        req,
        &key,
        "squashfs",
        Some(configured),
        log,
        stages,
        |dir| {
            let source = DirectorySource::scan_excluding(&root, true, &[b"boot/"])
                .context("scanning the configured rootfs")?;
            let bar = Arc::new(Bar::bytes("squashfs", source.total_bytes, log.progress));
            let image = dir.join("filesystem.squashfs");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&image)?;
            let opts = squashfs::Options {
                compression: s.compression,
                level: Some(s.level),
                block_size: s.block_size.0 as u32,
                jobs,
                mtime: req.source_date_epoch.map(|e| e.min(u32::MAX as u64) as u32),
                block_cache: req.block_cache.clone(),
                ..squashfs::Options::default()
            };
            let mut writer =
                SquashfsWriter::with_progress(file, opts, Arc::clone(&bar) as Arc<dyn Progress>)?;
            let link_meta = squashfs::EntryMeta {
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: req.source_date_epoch.unwrap_or(0) as i64,
                xattrs: Vec::new(),
            };
            let result = source
                .add_to(&mut writer)
                .and_then(|()| {
                    writer.add_symlink(seed_link.as_bytes(), &link_meta, seed_target.as_bytes())
                })
                .and_then(|()| writer.finish());
            bar.finish();
            let summary = result?;
            let reuse = summary
                .block_cache
                .as_ref()
                .map_or(String::new(), |s| format!("; {}", s.describe("blocks")));
            warn_block_cache(log, summary.block_cache.as_ref());
            block_cache = summary.block_cache;
            Ok(format!(
                "{} {} from {} ({} inodes){reuse}",
                summary.compression,
                crate::util::size::human_bytes(summary.image_bytes),
                crate::util::size::human_bytes(summary.bytes_in),
                summary.inodes
            ))
        },
    )?;
    if let Some(stage) = stages.last_mut().filter(|s| s.stage == "squashfs") {
        stage.block_cache = block_cache;
    }
    Ok(out.dir.join("filesystem.squashfs"))
}

/// The host's live ISO in `dir`, around the shared `squashfs`.
fn make_live_iso(
    req: &BuildRequest,
    target: &Target,
    dir: &Path,
    configured: &StageOutput,
    squashfs: &Path,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<Artifact> {
    let started = Instant::now();
    let host = &target.host;
    let mut cmdline = host.kernel_cmdline.clone();
    // live-boot only acts with boot=live; profiles for ISO hosts usually carry
    // it, but any profile can be built as an ISO.
    if cmdline.get("boot").is_none() {
        cmdline.append("boot=live").map_err(anyhow::Error::msg)?;
    }
    let seed = if let Some(c) = &host.configdrive {
        Seed::ConfigDrive {
            user_data: c.user_data.clone(),
            meta_data_json: c.meta_data_json.clone(),
            network_data_json: c.network_data_json.clone(),
        }
    } else if let Some(n) = &host.nocloud {
        Seed::NoCloud {
            user_data: n.user_data.clone(),
            meta_data: n.meta_data.clone(),
            network_config: n.network_config.clone(),
        }
    } else {
        anyhow::bail!("profile {} renders no cloud-init seed", req.profile.name);
    };
    let grub_cfg = render_grub_cfg(req, host, &cmdline.to_string())?;
    let out = dir.join(format!("{}.iso", target.name));
    let bar = Bar::bytes("iso", 0, log.progress);
    let summary = live_iso::write(
        &LiveIso {
            rootfs: &configured.dir.join("root"),
            squashfs,
            grub_cfg,
            volume_id: req.profile.iso.volume_id.as_str(),
            seed: &seed,
            mtime: req.source_date_epoch.map(|e| e as i64),
            secure_boot: req.profile.iso.secure_boot,
            cmdline: &cmdline.to_string(),
            signing: req.signing.as_ref(),
        },
        &out,
        &bar,
    );
    bar.finish();
    let summary = summary?;
    let seconds = started.elapsed().as_secs_f64();
    let detail = format!(
        "{} ({}, label {})",
        final_path(req, &out).display(),
        crate::util::size::human_bytes(summary.size_bytes),
        req.profile.iso.volume_id
    );
    log.info(&format!("iso: wrote {detail} in {seconds:.1} s"));
    stages.push(StageReport::artifact(
        "iso",
        Some(&target.name),
        seconds,
        detail,
    ));
    describe_artifact(ArtifactType::Iso, out)
}

/// grub.cfg from `grub-live.cfg.tera` in the template path. Kernel parameters
/// are quoted for GRUB's shell-like parser, which would otherwise expand `$`
/// and split on `;`.
fn render_grub_cfg(req: &BuildRequest, host: &HostRender, cmdline: &str) -> anyhow::Result<String> {
    let template =
        crate::boot::grub_cfg::find_template(&req.search.template_dirs, "grub-live.cfg.tera")?;
    let mut context = tera::Context::new();
    context.insert("profile", &req.profile.name);
    context.insert("hostname", &host.hostname);
    context.insert(
        "title",
        &format!("{} ({})", req.profile.description, host.hostname),
    );
    context.insert("cmdline", &crate::boot::grub_cfg::quote_cmdline(cmdline));
    crate::boot::grub_cfg::render(&template, &context)
}

/// Where a file written to the staging folder ends up, for what the user reads.
fn final_path(req: &BuildRequest, staged: &Path) -> PathBuf {
    req.output_dir.join(staged.file_name().unwrap_or_default())
}

fn describe_artifact(kind: ArtifactType, path: PathBuf) -> anyhow::Result<Artifact> {
    use md5::Md5;
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("reading back {}", path.display()))?;
    let (mut sha, mut md5) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        bytes += n as u64;
    }
    let (manifest, sbom) = crate::manifest::paths_for(&path);
    Ok(Artifact {
        kind,
        path,
        bytes,
        sha256: cache::hex(&sha.finalize()),
        md5: cache::hex(&md5.finalize()),
        manifest,
        sbom,
    })
}

/// `<artifact>.sha256` and `<artifact>.md5sum` in sha256sum/md5sum format, as
/// Airship's pipelines expect beside each image.
fn write_checksums(artifacts: &[&Artifact]) -> anyhow::Result<()> {
    for a in artifacts {
        let name = a
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (ext, digest) in [("sha256", &a.sha256), ("md5sum", &a.md5)] {
            let path = a.path.with_file_name(format!("{name}.{ext}"));
            let mut out = AtomicOutput::create(&path)?;
            use std::io::Write;
            writeln!(out.file(), "{digest}  {name}")?;
            out.commit()?;
        }
    }
    Ok(())
}

/// `<artifact>.manifest.json` and `<artifact>.spdx.json`, last, so that
/// they can list the checksum files with their digests.
fn write_manifests(
    req: &BuildRequest,
    stages: &[StageReport],
    packages: &[DebPackage],
    artifacts: &[&Artifact],
) -> anyhow::Result<()> {
    let profile = ProfileRecord::of(&req.profile)?;
    for a in artifacts {
        let name = a
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outputs: Vec<PathBuf> = ["sha256", "md5sum"]
            .iter()
            .map(|ext| a.path.with_file_name(format!("{name}.{ext}")))
            .collect();
        // A disk is not made from the squashfs; only the stages behind
        // this artifact are listed.
        let stage_keys = stages
            .iter()
            .filter(|s| {
                matches!(a.kind, ArtifactType::Iso | ArtifactType::Netboot) || s.stage != "squashfs"
            })
            .filter_map(|s| {
                s.key.as_ref().map(|key| StageRecord {
                    stage: s.stage.to_string(),
                    key: key.clone(),
                })
            })
            .collect();
        crate::manifest::write(
            &a.path,
            &ManifestInputs {
                kind: &a.kind.to_string(),
                digest: Some((a.bytes, a.sha256.clone())),
                outputs: &outputs,
                profile: Some(profile.clone()),
                stages: stage_keys,
                source_date_epoch: req.source_date_epoch,
                packages,
            },
        )
        .with_context(|| format!("writing the manifest of {}", a.path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_types_parse_with_airship_s_qcow_alias() {
        assert_eq!("qcow".parse::<ArtifactType>(), Ok(ArtifactType::Qcow2));
        assert!(
            "vmdk"
                .parse::<ArtifactType>()
                .unwrap_err()
                .contains("expected iso, qcow2, raw, oci or netboot")
        );
    }
}
