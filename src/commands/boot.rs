//! `osforge boot IMAGE`: boots an ISO, qcow2 or raw image in QEMU with the
//! serial console copied out as it arrives; with `--expect REGEX` it is a
//! check that passes as soon as the console matches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use regex::Regex;

use crate::bail_input;
use crate::cli::GlobalArgs;
use crate::util::cleanup;
use crate::vm::{
    self, AccelRequest, Ending, Firmware, ImageFormat, Media, Outcome, VmConfig, Watch,
};

/// Console lines shown when a check fails.
const TAIL_LINES: usize = 30;
/// How long `--expect` waits without `--timeout`: a full live ISO boots in
/// 2 to 4 minutes under TCG on a busy 2-core machine.
const DEFAULT_EXPECT_TIMEOUT_SECS: u64 = 600;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: ISO, qcow2 or raw (told apart by content).
    pub image: PathBuf,
    /// bios (SeaBIOS), uefi (OVMF) or uefi-secure (OVMF with Secure Boot on, Microsoft keys).
    #[arg(long, default_value = "bios",
          value_parser = PossibleValuesParser::new(Firmware::NAMES)
              .try_map(|n| Firmware::from_name(&n).ok_or("unknown firmware")))]
    pub firmware: Firmware,
    /// cd, usb or disk (default: cd for an ISO, disk for qcow2/raw; disk writes go to a throwaway overlay).
    #[arg(long, value_parser = PossibleValuesParser::new(Media::NAMES)
              .try_map(|n| Media::from_name(&n).ok_or("unknown media")))]
    pub media: Option<Media>,
    /// A NoCloud seed attached as a second CD: a directory (made into a `cidata` ISO) or an ISO file.
    #[arg(long, value_name = "DIR|ISO")]
    pub seed: Vec<PathBuf>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = vm::qemu::DEFAULT_MEMORY_MIB,
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub memory: u32,
    /// Exit 0 as soon as the console matches this regular expression, 1 if it never does.
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub expect: Option<Regex>,
    /// Stop after this many seconds (default with --expect: 600; without: none).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// auto (TCG unless asked: see `osforge boot` in the README), kvm or tcg.
    #[arg(long, default_value = "auto",
          value_parser = PossibleValuesParser::new(AccelRequest::NAMES)
              .try_map(|n| AccelRequest::from_name(&n).ok_or("unknown accelerator")))]
    pub accel: AccelRequest,
    /// Also write the console to this file.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// OVMF variables to start from instead of the firmware's own (copied
    /// for the boot): one with a site's Secure Boot keys enrolled.
    #[arg(long, value_name = "FILE")]
    pub ovmf_vars: Option<PathBuf>,
    /// No network card: boot as an air-gapped site would (preloaded images, no registry).
    #[arg(long)]
    pub no_network: bool,
}

fn parse_regex(text: &str) -> Result<Regex, String> {
    // regex's message draws the pattern over several lines; its last line says what is wrong.
    Regex::new(text).map_err(|e| {
        let message = e.to_string();
        let last = message.lines().last().unwrap_or_default().trim();
        last.trim_start_matches("error: ").to_string()
    })
}

#[derive(serde::Serialize)]
struct Summary {
    image: PathBuf,
    format: String,
    /// `null` without `--expect`.
    matched: Option<bool>,
    ending: &'static str,
    seconds: f64,
    accel: String,
    accel_reason: String,
    firmware: String,
    media: String,
    log: Option<PathBuf>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let format = match ImageFormat::detect(&args.image) {
        Ok(format) => format,
        Err(e) => bail_input!("{e:#}", e = anyhow::Error::new(e)),
    };
    for seed in &args.seed {
        if !seed.is_dir() && ImageFormat::detect(seed).ok() != Some(ImageFormat::Iso) {
            bail_input!(
                "--seed {}: neither a directory nor an ISO image",
                seed.display()
            );
        }
    }
    if let Some(log) = &args.log {
        let dir = log.parent().filter(|p| !p.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) || log.is_dir() {
            bail_input!(
                "--log {}: not a file in an existing directory",
                log.display()
            );
        }
    }
    let firmware = args.firmware;
    if let Some(vars) = &args.ovmf_vars {
        if firmware == Firmware::Bios {
            bail_input!("--ovmf-vars needs --firmware uefi or uefi-secure");
        }
        if !vars.is_file() {
            bail_input!("--ovmf-vars {}: no such file", vars.display());
        }
    }
    let media = args.media.unwrap_or(Media::default_for(format));
    let choice = match vm::accel::choose(args.accel) {
        Ok(choice) => choice,
        Err(e @ vm::Error::KvmUnusable { .. }) => bail_input!("--accel kvm: {e}"),
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "osforge boot: accelerator {} ({})",
        choice.accel, choice.reason
    );

    let work = WorkDir::new()?;
    let mut config = VmConfig::new(&args.image, format, work.path());
    config.firmware = firmware;
    config.media = media;
    config.memory_mib = args.memory;
    config.accel = choice.accel;
    config.ovmf_vars = args.ovmf_vars.clone();
    config.network = !args.no_network;
    for (i, seed) in args.seed.iter().enumerate() {
        config.extra_cdroms.push(if seed.is_dir() {
            let iso = work.path().join(format!("seed-{i}.iso"));
            vm::seed::write_nocloud_seed(seed, &iso)
                .with_context(|| format!("making a seed ISO from {}", seed.display()))?;
            iso
        } else {
            seed.clone()
        });
    }

    let timeout = args
        .timeout
        .or(args.expect.as_ref().map(|_| DEFAULT_EXPECT_TIMEOUT_SECS))
        .map(Duration::from_secs);
    // The console goes to stdout, unless stdout carries the JSON summary.
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let echo: Option<&mut dyn Write> = match (global.quiet, global.json) {
        (true, _) => None,
        (false, true) => Some(&mut stderr),
        (false, false) => Some(&mut stdout),
    };
    let mut until = args
        .expect
        .as_ref()
        .map(|re| move |text: &str| re.is_match(text));
    let outcome = vm::run::run(
        &config,
        Watch {
            echo,
            log: args.log.clone(),
            timeout,
            until: until.as_mut().map(|f| f as &mut dyn FnMut(&str) -> bool),
        },
    )
    .with_context(|| format!("booting {}", args.image.display()))?;
    drop(work);

    if global.json {
        let summary = Summary {
            image: args.image.clone(),
            format: format.to_string(),
            matched: args.expect.as_ref().map(|_| outcome.matched()),
            ending: ending_name(outcome.ending),
            seconds: (outcome.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            accel: choice.accel.to_string(),
            accel_reason: choice.reason.clone(),
            firmware: firmware.to_string(),
            media: media.to_string(),
            log: args.log.clone(),
        };
        println!("{}", serde_json::to_string(&summary)?);
    }
    verdict(&args, &outcome)
}

/// Ok when the run did what was asked; otherwise the console's tail on
/// stderr and the reason as the error.
fn verdict(args: &Args, outcome: &Outcome) -> anyhow::Result<()> {
    let ok = match &args.expect {
        Some(_) => outcome.matched(),
        None => outcome.ending == Ending::PoweredOff,
    };
    if ok {
        return Ok(());
    }
    let tail = outcome.tail(TAIL_LINES);
    let mut stderr = std::io::stderr().lock();
    let _ = match tail.len() {
        0 => writeln!(stderr, "osforge boot: the console printed nothing"),
        n => writeln!(stderr, "osforge boot: the console's last {n} lines:"),
    };
    for line in tail {
        let _ = writeln!(stderr, "  | {line}");
    }
    match &args.expect {
        Some(re) => anyhow::bail!("no match for '{re}': {}", outcome.describe()),
        None => anyhow::bail!("{}", outcome.describe()),
    }
}

fn ending_name(ending: Ending) -> &'static str {
    match ending {
        Ending::Matched => "matched",
        Ending::TimedOut => "timed_out",
        Ending::PoweredOff => "powered_off",
        Ending::QemuFailed { .. } => "qemu_failed",
    }
}

/// A private directory for the OVMF variables copy and seed ISOs, removed
/// when dropped and, if osforge is interrupted, by the signal handler.
struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    fn new() -> anyhow::Result<WorkDir> {
        let dir = tempfile::Builder::new()
            .prefix("osforge-boot-")
            .tempdir()
            .context("creating a work directory")?;
        cleanup::register(dir.path());
        Ok(WorkDir(Some(dir)))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            cleanup::unregister(dir.path());
        }
    }
}
