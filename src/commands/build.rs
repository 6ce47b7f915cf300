//! `osforge build`: a profile in, images out.

use std::path::PathBuf;

use crate::cli::GlobalArgs;
use crate::pipeline::cache::Cache;
use crate::pipeline::{self, ArtifactType, BuildRequest, Log};
use crate::profile::{self, SearchPath};
use crate::rootfs::Network;
use crate::s3::S3Url;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A profile name (looked up in ./profiles and $OSFORGE_PROFILE_PATH) or a path to one.
    #[arg(long, short)]
    pub profile: String,
    /// What to write: iso, qcow2, raw, oci, netboot, or several separated by commas.
    #[arg(long = "type", short = 't', default_value = "iso", value_delimiter = ',', value_parser = clap::value_parser!(ArtifactType))]
    pub types: Vec<ArtifactType>,
    /// Where the images and their checksums go.
    #[arg(long, short, default_value = "out")]
    pub output: PathBuf,
    /// File name of the images, without extension (default: the profile name).
    #[arg(long, conflicts_with = "hosts")]
    pub name: Option<String>,
    /// A hosts file (YAML): one set of images per host, named after it, all
    /// from one configured rootfs. --var, --cmdline-append, --network-data and
    /// --user-data apply to every host; a host's own values take precedence.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Only this worker's share of --hosts: INDEX/COUNT takes the hosts at
    /// positions INDEX, INDEX+COUNT, ... (counting from 0), as a Kubernetes
    /// Indexed Job's $JOB_COMPLETION_INDEX out of its completions.
    #[arg(long, value_name = "INDEX/COUNT", requires = "hosts", value_parser = parse_shard)]
    pub host_shard: Option<(usize, usize)>,
    /// Set a template variable the profile declares: --var hostname=node-1.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Kernel parameters to add to the profile's command line.
    #[arg(long, value_name = "ARGS")]
    pub cmdline_append: Option<String>,
    /// The host's network: OpenStack network_data.json or netplan v2
    /// network-config, checked and written in the form the datasource reads.
    #[arg(long, value_name = "FILE")]
    pub network_data: Option<PathBuf>,
    /// The host's user-data, used as written instead of the profile's template.
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,
    /// Debian mirror for the bootstrap (default: the profile's, else mmdebstrap's own).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// HTTP(S) proxy for downloads during the build; never written into the image.
    #[arg(long, value_name = "URL", env = "OSFORGE_PROXY")]
    pub proxy: Option<String>,
    /// Hosts that bypass the proxy.
    #[arg(long, value_name = "LIST")]
    pub no_proxy: Option<String>,
    /// Rebuild every stage instead of reusing cached ones.
    #[arg(long)]
    pub rebuild: bool,
    /// Where stage outputs are cached (default: $OSFORGE_CACHE_DIR, else ~/.cache/osforge).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compress every squashfs block and qcow2 cluster anew instead of reusing
    /// them from the block cache (in the cache directory, under blocks/).
    #[arg(long)]
    pub no_block_cache: bool,
    /// Compression threads, and with --hosts how many hosts' images are
    /// written at once (default: one per CPU).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Reproducible build: fixes every timestamp to at most this time.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "EPOCH")]
    pub source_date_epoch: Option<u64>,
    /// Install exactly the packages and versions of a lock file that an
    /// earlier build wrote (<name>.lock.json); the build fails if it cannot.
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// The site's Secure Boot db key (PEM): the live ISO's UEFI loader is a
    /// unified kernel image signed with it. Read only by sbsign, never logged.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// The certificate (PEM) of --signing-key, as enrolled in the firmware's db.
    #[arg(long, value_name = "FILE")]
    pub signing_cert: Option<PathBuf>,
    /// A stage cache shared by many machines, s3://BUCKET/PREFIX: stages
    /// missing locally are downloaded from it, stages built are uploaded.
    #[arg(long, value_name = "S3_URL", value_parser = super::publish::parse_publish_target)]
    pub cache_remote: Option<S3Url>,
    #[command(flatten)]
    pub s3: super::publish::S3Args,
    /// The HTTP folder a --type netboot set will be served from
    /// (http://SERVER/PATH/): written into its iPXE script, GRUB config and
    /// kernel command line (live-boot's fetch=, cloud-init's seed URL).
    #[arg(long, value_name = "URL")]
    pub netboot_url: Option<String>,
    /// Push the --type oci image to a registry once built (skopeo; same as
    /// --publish registry=REF); repeatable.
    #[arg(long, value_name = "REF", value_parser = parse_push)]
    pub push: Vec<crate::publish::PublishTarget>,
    /// Where the build's files go once built (repeatable): s3://BUCKET/PREFIX
    /// (every file, checksums last; see --s3-endpoint) or
    /// registry=REF[,tls-verify=false][,authfile=FILE] (the --type oci image).
    #[arg(long, value_name = "TARGET")]
    pub publish: Vec<crate::publish::PublishTarget>,
    /// A containers auth.json for the registries pushed to (never logged).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Verify the registries' TLS certificates (--tls-verify=false for a
    /// plain-HTTP or self-signed registry).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
}

fn parse_push(text: &str) -> Result<crate::publish::PublishTarget, String> {
    crate::publish::RegistryTarget::parse(text).map(crate::publish::PublishTarget::Registry)
}

/// `--signing-key` and `--signing-cert`, checked to be readable files; the
/// key's contents are left to sbsign.
fn signing_key(args: &Args) -> anyhow::Result<Option<crate::boot::uki::SigningKey>> {
    let (key, cert) = match (&args.signing_key, &args.signing_cert) {
        (None, None) => return Ok(None),
        (Some(key), Some(cert)) => (key, cert),
        (Some(_), None) => {
            crate::bail_input!("--signing-key needs --signing-cert (its certificate)")
        }
        (None, Some(_)) => {
            crate::bail_input!("--signing-cert needs --signing-key (the key it certifies)")
        }
    };
    for (flag, path) in [("--signing-key", key), ("--signing-cert", cert)] {
        if let Err(e) = std::fs::File::open(path) {
            crate::bail_input!("{flag} {}: {e}", path.display());
        }
    }
    if args.types.iter().any(|t| *t != ArtifactType::Iso) {
        crate::bail_input!(
            "--signing-key signs the live ISO's UEFI loader; build --type iso with it (disk images take disk.secure_boot)"
        );
    }
    Ok(Some(crate::boot::uki::SigningKey {
        key: key.clone(),
        cert: cert.clone(),
    }))
}

/// `INDEX/COUNT`, with INDEX < COUNT.
fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let expected = "expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4";
    let (index, count) = text.split_once('/').ok_or(expected)?;
    match (index.trim().parse::<usize>(), count.trim().parse::<usize>()) {
        (Ok(index), Ok(count)) if index < count => Ok((index, count)),
        _ => Err(expected.to_string()),
    }
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    profile::parse_var_arg(text)
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let search = SearchPath::from_env();
    let profile =
        profile::load(&args.profile, &search, &args.vars).map_err(|e| e.into_input_error())?;
    if !global.quiet && !global.json {
        // Allowed rather than refused: a per-host sysctl or file is legitimate,
        // but it costs a configure stage (and everything after it) per host.
        for (var, key) in profile.per_host_os_variables(&args.vars) {
            eprintln!(
                "osforge: note: --var {var} is used in the OS configuration ({key}): the configure stage and those after it are built for each value"
            );
        }
        // The playbooks get every profile variable, so each is in their keys.
        if profile.ansible.is_some() && !args.vars.is_empty() {
            let names: Vec<&str> = args.vars.iter().map(|(k, _)| k.as_str()).collect();
            eprintln!(
                "osforge: note: --var {} reaches the ansible playbooks (they get the profile's variables): the ansible stages and those after them are built for each value",
                names.join(", --var ")
            );
        }
    }
    let host_files =
        profile::HostFiles::load(args.network_data.as_deref(), args.user_data.as_deref())
            .map_err(|e| e.into_input_error())?;
    let mut hosts = args
        .hosts
        .as_deref()
        .map(|path| profile::HostsFile::load(path, &profile, &search))
        .transpose()
        .map_err(|e| e.into_input_error())?;
    if let (Some(file), Some((index, count))) = (hosts.as_mut(), args.host_shard) {
        let mut position = 0..;
        file.hosts
            .retain(|_| position.next().is_some_and(|i| i % count == index));
        if file.hosts.is_empty() {
            // More workers than hosts: this one has nothing to do, which is
            // not a failure (the Job's other indexes build them all).
            if global.json {
                println!("{}", serde_json::json!({ "hosts": [], "artifacts": [] }));
            } else if !global.quiet {
                eprintln!(
                    "osforge: --host-shard {index}/{count}: no hosts in this share; nothing to build"
                );
            }
            return Ok(());
        }
    }
    let signing = signing_key(&args)?;
    let name = args.name.clone().unwrap_or_else(|| profile.name.clone());
    if name.is_empty() || name.contains('/') {
        crate::bail_input!("invalid value '{name}' for '--name': expected a file name without '/'");
    }
    // The build's own SOURCE_DATE_EPOCH (flag or environment) wins over the
    // profile's: whoever runs the build decides, as with the variable itself.
    let source_date_epoch = args.source_date_epoch.or(profile.epoch);
    if let Some(epoch) = source_date_epoch {
        // The tools osforge runs (useradd's account dates, dpkg, Python's
        // byte compiler) read it from the environment, as the flag's users
        // expect. SAFETY: set before the build starts any thread that reads
        // the environment.
        unsafe { std::env::set_var("SOURCE_DATE_EPOCH", epoch.to_string()) };
    }
    let lock = args
        .lock
        .as_deref()
        .map(crate::manifest::lock::LockFile::load)
        .transpose()
        .map_err(|e| crate::error::InputError(e.to_string()))?;
    // Connected (and the credentials tried) before the first stage: wrong
    // credentials fail now, not after minutes of bootstrapping.
    let remote_cache = args
        .cache_remote
        .as_ref()
        .map(|url| {
            Ok::<_, anyhow::Error>(pipeline::remote::RemoteCache {
                store: args.s3.connect(url, "--cache-remote")?,
                url: url.clone(),
            })
        })
        .transpose()?;
    let (mut publish_s3, mut registries) = (Vec::new(), Vec::new());
    for target in args.push.iter().chain(&args.publish) {
        match target {
            crate::publish::PublishTarget::S3(url) => {
                publish_s3.push(crate::s3::publish::PublishTarget {
                    store: args.s3.connect(url, "--publish")?,
                    url: url.clone(),
                })
            }
            registry => registries.push(registry.clone()),
        }
    }
    let cache = Cache::new(args.cache_dir.unwrap_or_else(Cache::default_root));
    let request = BuildRequest {
        lock,
        name,
        search,
        types: dedup(args.types),
        output_dir: args.output,
        cmdline_append: args.cmdline_append,
        host_files,
        mirror: args.mirror,
        network: Network::from_environment(args.proxy, args.no_proxy),
        rebuild: args.rebuild,
        block_cache: pipeline::open_block_cache(&cache, !args.no_block_cache)?,
        cache,
        jobs: pipeline::jobs_or_default(args.jobs),
        source_date_epoch,
        hosts,
        profile,
        signing,
        remote_cache,
        publish_s3,
        netboot_url: args.netboot_url,
        publish: registries,
        push_authfile: args.authfile,
        push_tls_verify: args.tls_verify,
    };
    let log = Log {
        quiet: global.quiet || global.json,
        progress: !global.quiet && !global.json,
    };
    let report = pipeline::build_image(&request, &log)?;
    if global.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if !global.quiet {
        for a in &report.artifacts {
            eprintln!(
                "osforge: {} {} ({} bytes, sha256 {})",
                a.kind,
                a.path.display(),
                a.bytes,
                &a.sha256[..16]
            );
        }
        let hosts = match &report.hostname {
            Some(hostname) => format!("host {hostname}"),
            None => format!("{} hosts", report.hosts.len()),
        };
        eprintln!(
            "osforge: built {} for {hosts} in {:.1} s",
            report.profile, report.seconds
        );
    }
    Ok(())
}

fn dedup(types: Vec<ArtifactType>) -> Vec<ArtifactType> {
    let mut out = Vec::new();
    for t in types {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_shards_are_index_over_count() {
        assert_eq!(parse_shard("0/4"), Ok((0, 4)));
        assert_eq!(parse_shard("3/4"), Ok((3, 4)));
        for bad in ["4/4", "1", "a/2", "0/0", "-1/2"] {
            let err = parse_shard(bad).unwrap_err();
            assert!(err.contains("expected INDEX/COUNT"), "{bad}: {err}");
        }
    }
}
