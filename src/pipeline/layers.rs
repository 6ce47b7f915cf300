//! The root filesystem as a stack of cached layers, one per profile of the
//! inheritance chain that adds something.
//!
//! A profile starts from its nearest ancestor whose root filesystem it only
//! adds to: same source (same `distro:` for a bootstrap), same package
//! manager, and the ancestor's repositories, packages and package groups
//! all present, its `cmds:` a prefix of the child's. The chain is followed
//! up to a profile with no such ancestor: that one is bootstrapped (or taken
//! from its `source:`), and every profile below it is a layer that installs
//! its additions in a working container on top of its parent's cached
//! result. So control-plane and data-plane, both children of qcow2-host,
//! share one bootstrap (base) and one layer (qcow2-host), and a package
//! added to data-plane rebuilds only data-plane's layer.
//!
//! Ancestors are loaded as profiles of their own, without the build's
//! `--var`s; one that does not load alone (a fragment meant only to be
//! inherited) is not a layer, and the chain looks further up.

use crate::manifest::lock::LockedSource;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::cache::StageKey;
use super::{BuildRequest, Log, StageOutput, StageReport, cached_stage, plan};
use crate::profile::{self, Profile, RootfsSource};
use crate::rootfs::layer::{self, LayerSpec};
use crate::rootfs::{self, ExtraRepo};

const LAYER_FORMAT: u32 = 2;

/// Bumped when the bootstrap stage's code changes what it produces.
pub(super) const BOOTSTRAP_FORMAT: u32 = 2;

/// The profiles whose root filesystems stack up to the one being built,
/// the bottom one first.
fn chain(req: &BuildRequest, log: &Log) -> Vec<Profile> {
    // Each ancestor is loaded once, though every profile of the chain
    // looks at the ancestors above it.
    let mut loaded: HashMap<PathBuf, Option<Profile>> = HashMap::new();
    let mut load = |path: &PathBuf| -> Option<Profile> {
        loaded
            .entry(path.clone())
            .or_insert_with(
                || match profile::load(&path.to_string_lossy(), &req.search, &[]) {
                    Ok(ancestor) => Some(ancestor),
                    Err(e) => {
                        if !log.quiet && std::env::var_os("OSFORGE_DEBUG").is_some() {
                            log.info(&format!("layers: {} is not a layer: {e}", path.display()));
                        }
                        None
                    }
                },
            )
            .clone()
    };
    let mut chain = vec![req.profile.clone()];
    loop {
        let current = chain.last().expect("never empty");
        let ancestors = &current.lineage[..current.lineage.len().saturating_sub(1)];
        let base = ancestors
            .iter()
            .rev()
            .filter_map(&mut load)
            .find(|ancestor| adds_only_to(current, ancestor));
        match base {
            Some(ancestor) => chain.push(ancestor),
            None => break,
        }
    }
    chain.reverse();
    chain
}

/// Whether `child`'s root filesystem is `ancestor`'s plus additions.
fn adds_only_to(child: &Profile, ancestor: &Profile) -> bool {
    let same_base = match (&child.source, &ancestor.source) {
        (RootfsSource::Bootstrap, RootfsSource::Bootstrap) => child.distro == ancestor.distro,
        (a, b) => a == b,
    };
    let child_repos: Vec<serde_json::Value> = child.repos.iter().map(repo_identity).collect();
    same_base
        && child.pkg_manager == ancestor.pkg_manager
        && ancestor
            .repos
            .iter()
            .all(|r| child_repos.contains(&repo_identity(r)))
        && ancestor.packages.iter().all(|p| child.packages.contains(p))
        && ancestor
            .package_groups
            .iter()
            .all(|g| child.package_groups.contains(g))
        && child.cmds.starts_with(&ancestor.cmds)
}

fn repo_identity(r: &profile::Repo) -> serde_json::Value {
    serde_json::json!([
        r.name,
        r.uri,
        r.suite,
        r.components,
        r.key.as_ref().map(|k| &k.xxh3_128)
    ])
}

/// What `child` adds to `parent` (None: the bottom of the chain, where
/// what a bootstrap cannot do is added: groups and commands, or everything
/// when the base is an image).
fn additions(req: &BuildRequest, child: &Profile, parent: Option<&Profile>) -> LayerSpec {
    let all_repos: Vec<ExtraRepo> = plan::bootstrap_spec(child, None, None).repos;
    let (repos, packages, groups, cmds) = match parent {
        Some(parent) => {
            let parent_repos: Vec<serde_json::Value> =
                parent.repos.iter().map(repo_identity).collect();
            let repos = child
                .repos
                .iter()
                .zip(all_repos)
                .filter(|(r, _)| !parent_repos.contains(&repo_identity(r)))
                .map(|(_, spec)| spec)
                .collect();
            let packages = child
                .packages
                .iter()
                .filter(|p| !parent.packages.contains(p))
                .map(|p| p.to_string())
                .collect();
            let groups = child
                .package_groups
                .iter()
                .filter(|g| !parent.package_groups.contains(g))
                .map(|g| g.to_string())
                .collect();
            (
                repos,
                packages,
                groups,
                child.cmds[parent.cmds.len()..].to_vec(),
            )
        }
        None if child.source.is_bootstrap() => (
            Vec::new(),
            Vec::new(),
            child.package_groups.iter().map(|g| g.to_string()).collect(),
            child.cmds.clone(),
        ),
        None => (
            all_repos,
            child.packages.iter().map(|p| p.to_string()).collect(),
            child.package_groups.iter().map(|g| g.to_string()).collect(),
            child.cmds.clone(),
        ),
    };
    LayerSpec {
        pkg_manager: child.pkg_manager,
        repos,
        packages,
        package_groups: groups,
        cmds,
        source_date_epoch: req.source_date_epoch,
        pins: req.lock.as_ref().map(|l| l.apt_preferences()),
    }
}

/// The built root filesystem (`rootfs.tar` in the returned entry): the
/// bottom of the chain, then each layer on the one before; and the `source:`
/// it started from, for the lock file.
pub(super) fn build_rootfs(
    req: &BuildRequest,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<(StageOutput, Option<LockedSource>)> {
    let chain = chain(req, log);
    let bottom = &chain[0];
    let (mut current, source) = match &bottom.source {
        RootfsSource::Bootstrap => {
            if let Some(locked) = req.lock.as_ref().and_then(|l| l.source.as_ref()) {
                anyhow::bail!(
                    "the lock file was written from the source {}, the profile bootstraps; build without --lock to write a new lock",
                    crate::util::redact::url(&locked.reference)
                );
            }
            (bootstrap(req, bottom, log, stages)?, None)
        }
        source => {
            let (output, locked) = super::sources::import(req, bottom, source, log, stages)?;
            (output, Some(locked))
        }
    };
    let mut parent: Option<&Profile> = None;
    for profile in &chain {
        let spec = additions(req, profile, parent);
        parent = Some(profile);
        if spec.is_empty() {
            continue;
        }
        current = build_layer(req, profile, &spec, &current, log, stages)?;
    }
    Ok((current, source))
}

fn bootstrap(
    req: &BuildRequest,
    profile: &Profile,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<StageOutput> {
    let mut spec = plan::bootstrap_spec(profile, req.mirror.as_deref(), req.source_date_epoch);
    spec.pins = req.lock.as_ref().map(|l| l.apt_preferences());
    let key = StageKey::new(
        "bootstrap",
        &serde_json::json!({
            "format": BOOTSTRAP_FORMAT,
            "spec": spec,
            "mmdebstrap": rootfs::mmdebstrap_version(),
        }),
    );
    let network = req.network.clone();
    let label = format!("bootstrap {}", profile.name);
    cached_stage(req, &key, &label, None, log, stages, |dir| {
        let spinner = crate::util::progress::Bar::spinner(
            "bootstrapping the rootfs (mmdebstrap)",
            log.progress,
        );
        let result = rootfs::bootstrap(&spec, &network, dir);
        spinner.finish();
        let tar = result?;
        let bytes = std::fs::metadata(&tar)?.len();
        Ok(format!(
            "mmdebstrap {} {} with {} packages for {}: {}",
            spec.suite,
            spec.variant,
            spec.packages.len(),
            profile.name,
            crate::util::size::human_bytes(bytes)
        ))
    })
}

fn build_layer(
    req: &BuildRequest,
    profile: &Profile,
    spec: &LayerSpec,
    parent: &StageOutput,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<StageOutput> {
    let key = StageKey::new(
        "layer",
        &serde_json::json!({ "format": LAYER_FORMAT, "parent": parent.key, "spec": spec }),
    );
    let label = format!("layer {}", profile.name);
    let tar = parent.dir.join("rootfs.tar");
    let network = req.network.clone();
    cached_stage(
        req,
        &key,
        &label,
        Some(parent),
        log,
        stages,
        |dir: &Path| {
            let spinner = crate::util::progress::Bar::spinner(
                &format!("layer {}: {}", profile.name, spec.summary()),
                log.progress,
            );
            let result = layer::build(&tar, spec, &network, dir, |line| {
                log.info(&format!("layer {}: {line}", profile.name))
            });
            spinner.finish();
            let out = result
                .with_context(|| format!("building the layer of profile {}", profile.name))?;
            let bytes = std::fs::metadata(&out)?.len();
            Ok(format!(
                "{} {} on {}: {}",
                profile.name,
                spec.summary(),
                parent.label,
                crate::util::size::human_bytes(bytes)
            ))
        },
    )
}
