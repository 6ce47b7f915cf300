//! `osforge publish FILE... --to s3://BUCKET/PREFIX`: files already built
//! (an image and its checksum, manifest and SBOM) uploaded the way
//! `osforge build --publish` uploads them. Also the S3 flags both share.

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::GlobalArgs;
use crate::s3::{self, Credentials, S3Url, Settings, Store};

/// Where the S3 store is and how to sign in (`build` and `publish`).
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// The S3-compatible server (Garage, MinIO, Ceph RGW...): http://HOST:PORT
    /// or https://... (default: AWS S3 in --s3-region).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The region requests are signed for (Garage's default is "garage").
    #[arg(long, value_name = "NAME", default_value = s3::DEFAULT_REGION)]
    pub s3_region: String,
    /// An AWS credentials file ([default] aws_access_key_id, aws_secret_access_key);
    /// default: $S3_ACCESS/$S3_SECRET, else $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY.
    #[arg(long, value_name = "FILE")]
    pub s3_credentials: Option<PathBuf>,
    /// Size of the parts of multipart uploads, in MiB (at least 5); files up
    /// to this size go up in one request.
    #[arg(long, value_name = "MIB", default_value_t = s3::DEFAULT_PART_SIZE >> 20)]
    pub s3_part_size: usize,
}

impl S3Args {
    /// A store for `url`'s bucket, checked with one listing request, so that
    /// wrong credentials or a missing bucket fail before any work is done.
    pub fn connect(&self, url: &S3Url, flag: &str) -> anyhow::Result<Store> {
        let settings = Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            part_size: self.s3_part_size.saturating_mul(1 << 20),
        };
        let input = |e: s3::S3Error| anyhow::Error::new(crate::error::InputError(e.to_string()));
        let credentials = Credentials::find(self.s3_credentials.as_deref()).map_err(input)?;
        let store = Store::connect(&url.bucket, &settings, &credentials).map_err(|e| match e {
            s3::S3Error::Store { .. } => anyhow::Error::new(e),
            other => input(other),
        })?;
        store
            .probe(&url.prefix)
            .with_context(|| format!("{flag} {url}"))?;
        Ok(store)
    }
}

/// `--publish` and `--to` values. Only S3 for now; other kinds of
/// destination (a registry) would be more variants of this.
pub fn parse_publish_target(text: &str) -> Result<S3Url, String> {
    text.parse::<S3Url>().map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The files to upload (object names are their file names).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Where to: s3://BUCKET/PREFIX.
    #[arg(long, value_name = "S3_URL", value_parser = parse_publish_target)]
    pub to: S3Url,
    #[command(flatten)]
    pub s3: S3Args,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    for file in &args.files {
        match std::fs::metadata(file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => crate::bail_input!("{}: not a regular file", file.display()),
            Err(e) => crate::bail_input!("{}: {}", file.display(), super::io_reason(&e)),
        }
    }
    let store = args.s3.connect(&args.to, "--to")?;
    let quiet = global.quiet || global.json;
    let log = |line: &str| {
        if !quiet {
            eprintln!("osforge: {}", crate::util::redact::hide(line));
        }
    };
    let published = s3::publish::publish_files(&store, &args.to, None, &args.files, &log)
        .with_context(|| format!("publishing to {}", args.to))?;
    if global.json {
        println!("{}", serde_json::json!({ "published": published }));
    }
    Ok(())
}
