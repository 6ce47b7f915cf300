//! `osforge airship-builder`: osforge as airshipctl's image-builder container
//! (`ENTRYPOINT ["osforge"]`, `CMD ["airship-builder"]`). The contract (v1
//! environment and builder-conf.yaml, v2 document on stdin) is resolved by
//! [`crate::airship::contract`]; this file writes the generated profile,
//! runs the build and puts the image and `output-metadata.yaml` into the
//! volume.
//!
//! The image is built into a hidden staging directory in the volume (same
//! file system, so the final rename is atomic) and the metadata file is
//! committed last: airshipctl reads the metadata, so it must never name an
//! image that is not whole. A stale metadata file from an earlier run is
//! removed before the build starts, so a failed build leaves none behind.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::airship::contract::{self, ContractError, Env, ImageType, Job, Version};
use crate::cli::GlobalArgs;
use crate::error::InputError;
use crate::pipeline::cache::Cache;
use crate::pipeline::{self, ArtifactType, BuildRequest, Log};
use crate::profile::{self, HostFiles, SearchPath};
use crate::rootfs::Network;
use crate::util::cleanup;
use crate::util::output::AtomicOutput;

/// The generated profile's name (its file stem).
const PROFILE_NAME: &str = "airship-builder";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// v2 without BUILDER_CONFIG: where the image and the metadata file go
    /// (bootImagePath names this directory).
    #[arg(long, short, default_value = ".")]
    pub output: PathBuf,
    /// Where stage outputs are cached (default: $OSFORGE_CACHE_DIR, else ~/.cache/osforge).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Rebuild every stage instead of reusing cached ones.
    #[arg(long)]
    pub rebuild: bool,
    /// Compression threads (default: one per CPU).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Reproducible build: fixes every timestamp to at most this time.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "EPOCH")]
    pub source_date_epoch: Option<u64>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let env = Env::from_process();
    let job = match Version::from_env(&env).map_err(bad_input)? {
        Version::V1 => contract::resolve_v1(&env),
        Version::V2 => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the v2 document from stdin")?;
            contract::resolve_v2(&env, &text, &args.output)
        }
    }
    .map_err(bad_input)?;
    if !global.json {
        // Even with --quiet: a build that drops settings must say so.
        for u in &job.profile.unmapped {
            eprintln!("osforge: {u}");
        }
    }

    let work = tempfile::Builder::new()
        .prefix("osforge-airship-builder-")
        .tempdir()
        .context("creating a directory for the generated profile")?;
    // In a profiles/ folder of its own, so the templates/ beside it (searched
    // first) is one that does not exist rather than a stranger's.
    let profile_path = work
        .path()
        .join("profiles")
        .join(format!("{PROFILE_NAME}.yaml"));
    std::fs::create_dir_all(profile_path.parent().expect("has a parent"))?;
    std::fs::write(&profile_path, &job.profile.text)
        .with_context(|| format!("writing {}", profile_path.display()))?;
    let search = SearchPath::from_env();
    let profile =
        profile::load(&profile_path.display().to_string(), &search, &[]).map_err(|e| {
            InputError(format!(
                "profile {} (the image's base): {e}",
                job.base_profile
            ))
        })?;

    if job.metadata_file.exists() {
        std::fs::remove_file(&job.metadata_file)
            .with_context(|| format!("removing the stale {}", job.metadata_file.display()))?;
    }
    let staging = tempfile::Builder::new()
        .prefix(".airship-builder.osforge-tmp-")
        .tempdir_in(&job.volume.container)
        .with_context(|| {
            format!(
                "creating a staging directory in {}",
                job.volume.container.display()
            )
        })?;
    cleanup::register(staging.path());
    let cache = Cache::new(args.cache_dir.unwrap_or_else(Cache::default_root));
    let request = BuildRequest {
        lock: None,
        profile,
        search,
        types: vec![match job.image_type {
            ImageType::Iso => ArtifactType::Iso,
            ImageType::Qcow => ArtifactType::Qcow2,
        }],
        output_dir: staging.path().to_path_buf(),
        name: "image".into(),
        cmdline_append: None,
        host_files: HostFiles {
            network: job.network.clone(),
            user_data: job
                .user_data
                .as_ref()
                .map(|(from, text)| (PathBuf::from(from), text.clone())),
        },
        mirror: None,
        network: Network {
            proxy: job.proxy.clone(),
            no_proxy: job.no_proxy.clone(),
        },
        rebuild: args.rebuild,
        block_cache: pipeline::open_block_cache(&cache, true)?,
        cache,
        jobs: pipeline::jobs_or_default(args.jobs),
        source_date_epoch: args.source_date_epoch,
        hosts: None,
        signing: None,
        remote_cache: None,
        publish_s3: Vec::new(),
        netboot_url: None,
        publish: Vec::new(),
        push_authfile: None,
        push_tls_verify: true,
    };
    let log = Log {
        quiet: global.quiet || global.json,
        progress: !global.quiet && !global.json,
    };
    let report = pipeline::build_image(&request, &log)?;
    let artifact = report
        .artifacts
        .first()
        .context("the build wrote no image")?;
    publish(&job, &artifact.path, &artifact.md5)?;
    cleanup::unregister(staging.path());
    drop(staging);

    let boot_image_path = job.volume.host_path(&job.output_file);
    if global.json {
        let value = serde_json::json!({
            "bootImagePath": boot_image_path,
            "md5sum": artifact.md5,
            "image": job.image_path(),
            "metadata": job.metadata_file,
            "unmapped": job.profile.unmapped,
            "build": report,
            "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        println!("{value}");
    } else if !global.quiet {
        eprintln!(
            "osforge: wrote {} ({} bytes, md5 {}) and {} (bootImagePath {boot_image_path}) in {:.1} s",
            job.image_path().display(),
            artifact.bytes,
            artifact.md5,
            job.metadata_file.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Moves the image into place, then commits the metadata that names it.
fn publish(job: &Job, built: &std::path::Path, md5: &str) -> anyhow::Result<()> {
    let mut metadata = AtomicOutput::create(&job.metadata_file)
        .with_context(|| format!("creating {}", job.metadata_file.display()))?;
    metadata
        .file()
        .write_all(job.metadata_yaml(md5).as_bytes())
        .with_context(|| format!("writing {}", job.metadata_file.display()))?;
    let image = job.image_path();
    std::fs::rename(built, &image)
        .with_context(|| format!("moving the image into place at {}", image.display()))?;
    metadata
        .commit()
        .with_context(|| format!("moving {} into place", job.metadata_file.display()))
}

fn bad_input(e: ContractError) -> anyhow::Error {
    anyhow::Error::new(InputError(e.to_string()))
}
