//! `--type netboot`: the live ISO's kernel, initrd and squashfs as files an
//! HTTP server hands out, with an iPXE script, a GRUB config and a NoCloud
//! seed folder per host ([`crate::artifacts::netboot`] has the layout).
//!
//! The kernel, initrd and squashfs are the ISO's own (the same cached
//! squashfs stage), written once per build and named after the build; the
//! scripts and seeds are per host.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use super::hosts::Target;
use super::{Artifact, ArtifactType, BuildRequest, Log, StageOutput, StageReport};
use crate::artifacts::live_iso::find_kernel;
use crate::artifacts::netboot::{self, BaseUrl, HostSet};
use crate::profile::Datasource;

/// Checked before the first stage: the URL, and a seed the set can serve.
pub(super) fn check_inputs(req: &BuildRequest, targets: &[Target]) -> anyhow::Result<()> {
    if !req.types.contains(&ArtifactType::Netboot) {
        return Ok(());
    }
    let Some(url) = &req.netboot_url else {
        crate::bail_input!(
            "--type netboot needs --netboot-url http://SERVER/PATH/: live-boot (fetch=) and cloud-init (ds=nocloud-net;s=) fetch from Linux, where no URL is relative"
        );
    };
    BaseUrl::parse(url).map_err(|e| crate::error::InputError(e.to_string()))?;
    if req.profile.cloud_init.datasource != Datasource::Nocloud {
        crate::bail_input!(
            "profile {}: cloud_init.datasource is configdrive, but --type netboot serves the host's seed over HTTP as NoCloud (set cloud_init.datasource: nocloud)",
            req.profile.name
        );
    }
    for target in targets {
        netboot::check_ipxe_literal(&target.host.kernel_cmdline.to_string())
            .map_err(|e| crate::error::InputError(format!("{}: {e}", target.name)))?;
    }
    Ok(())
}

fn base_url(req: &BuildRequest) -> anyhow::Result<BaseUrl> {
    let url = req
        .netboot_url
        .as_deref()
        .context("--type netboot needs --netboot-url")?;
    Ok(BaseUrl::parse(url)?)
}

/// `NAME.vmlinuz`, `NAME.initrd.img` and `NAME.squashfs` in `dir`: the
/// kernel and initrd found as the ISO finds them, the squashfs stage's file.
pub(super) fn make_shared(
    req: &BuildRequest,
    dir: &Path,
    configured: &StageOutput,
    squashfs: &Path,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<Vec<Artifact>> {
    let started = Instant::now();
    let (kernel, initrd) = find_kernel(&configured.dir.join("root"))?;
    let files = [
        (kernel, netboot::kernel_file(&req.name)),
        (initrd, netboot::initrd_file(&req.name)),
        (squashfs.to_path_buf(), netboot::squashfs_file(&req.name)),
    ];
    let mut artifacts = Vec::new();
    let mut bytes = 0;
    for (from, name) in files {
        // Copied, not linked: the output must not share an inode with the
        // cache entry, which a user's edit or a prune would then change.
        let to = dir.join(&name);
        bytes += std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        artifacts.push(super::describe_artifact(ArtifactType::Netboot, to)?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let detail = format!(
        "{} kernel, initrd and squashfs ({})",
        req.name,
        crate::util::size::human_bytes(bytes)
    );
    log.info(&format!("netboot: wrote {detail} in {seconds:.1} s"));
    stages.push(StageReport::artifact("netboot", None, seconds, detail));
    Ok(artifacts)
}

/// The host's `HOST.ipxe`, `HOST.grub.cfg` and `HOST.seed/` in `dir`.
pub(super) fn make_host(
    req: &BuildRequest,
    target: &Target,
    dir: &Path,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<Vec<Artifact>> {
    let started = Instant::now();
    let host = &target.host;
    let base = base_url(req)?;
    let title = format!("{} ({})", req.profile.description, host.hostname);
    let set = HostSet {
        base: &base,
        shared: &req.name,
        host: &target.name,
        profile: &req.profile.name,
        hostname: &host.hostname,
        title: &title,
    };
    let seed = host
        .nocloud
        .as_ref()
        .with_context(|| format!("profile {} renders no NoCloud seed", req.profile.name))?;
    let cmdline = set
        .cmdline(&host.kernel_cmdline, seed.network_config.as_deref())
        .map_err(|e| crate::error::InputError(e.to_string()))?;
    netboot::write_seed(
        dir,
        &target.name,
        &seed.user_data,
        &seed.meta_data,
        seed.network_config.as_deref(),
    )?;
    let mut artifacts = Vec::new();
    for (name, text) in [
        (netboot::ipxe_file(&target.name), set.ipxe_script(&cmdline)),
        (netboot::grub_file(&target.name), set.grub_cfg(&cmdline)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        artifacts.push(super::describe_artifact(ArtifactType::Netboot, path)?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let detail = format!(
        "{} (iPXE), {} (GRUB), {}/ (seed) for {}",
        netboot::ipxe_file(&target.name),
        netboot::grub_file(&target.name),
        netboot::seed_dir(&target.name),
        base.as_str()
    );
    log.info(&format!("netboot: wrote {detail} in {seconds:.1} s"));
    stages.push(StageReport::artifact(
        "netboot",
        Some(&target.name),
        seconds,
        detail,
    ));
    Ok(artifacts)
}
