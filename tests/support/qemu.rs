//! Booting images in QEMU for the tests, through osforge's own runner
//! ([`osforge::vm`], also behind `osforge boot`): TCG, since KVM hangs
//! guests on these machines, and the serial console kept in a log per boot.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use osforge::vm::{Accel, Firmware, ImageFormat, Media, VmConfig};
use osforge::vm::{Watch, run::run};

/// How many console lines a failed boot shows.
const TAIL_LINES: usize = 30;

pub struct Boot<'a> {
    pub image: &'a Path,
    /// Iso or Raw are both read as raw bytes; Qcow2 as qcow2.
    pub format: ImageFormat,
    pub firmware: Firmware,
    pub media: Media,
    pub memory_mib: u32,
    /// Extra read-only CD images (a NoCloud seed, as metal3 attaches a config drive).
    pub extra_cdroms: Vec<PathBuf>,
    /// An OVMF variables template of the test's own (enrolled keys).
    pub ovmf_vars: Option<PathBuf>,
    pub timeout: Duration,
}

impl<'a> Boot<'a> {
    /// A live ISO as a CD under SeaBIOS, with the memory and time a
    /// Debian live system needs under TCG.
    pub fn live_cd_bios(iso: &'a Path) -> Boot<'a> {
        Boot {
            image: iso,
            format: ImageFormat::Raw,
            firmware: Firmware::Bios,
            media: Media::Cd,
            memory_mib: 1536,
            extra_cdroms: Vec::new(),
            ovmf_vars: None,
            timeout: Duration::from_secs(900),
        }
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.firmware, self.media)
    }
}

/// Boots and waits until `done` accepts the serial log so far; returns the
/// log, or an error with its tail. The log is kept as `<work>/<name>.serial.log`
/// and the OVMF variables are copied into `work` for this boot.
pub fn boot_until(b: &Boot, work: &Path, done: impl Fn(&str) -> bool) -> Result<String, String> {
    let mut config = VmConfig::new(b.image, b.format, work);
    config.firmware = b.firmware;
    config.media = b.media;
    config.memory_mib = b.memory_mib;
    config.extra_cdroms = b.extra_cdroms.clone();
    config.ovmf_vars = b.ovmf_vars.clone();
    run_until(&config, &b.name(), work, b.timeout, done)
}

/// Runs `config` under TCG until `done` accepts the serial log so far, or
/// `timeout`; the log is kept as `<work>/<name>.serial.log`.
pub fn run_until(
    config: &VmConfig,
    name: &str,
    work: &Path,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let mut config = config.clone();
    config.accel = Accel::Tcg;
    let mut until = |text: &str| done(text);
    let outcome = run(
        &config,
        Watch {
            echo: None,
            log: Some(work.join(format!("{name}.serial.log"))),
            timeout: Some(timeout),
            until: Some(&mut until),
        },
    )
    .map_err(|e| format!("{name}: {:#}", anyhow::Error::new(e)))?;
    if outcome.matched() {
        return Ok(outcome.console);
    }
    Err(format!(
        "{name}: no marker: {}; the serial console ends with:\n{}",
        outcome.describe(),
        outcome.tail(TAIL_LINES).join("\n")
    ))
}

/// Runs several boots at once and returns their results in order.
pub fn boot_all(
    boots: &[Boot],
    work: &Path,
    done: impl Fn(&str) -> bool + Sync,
) -> Vec<Result<String, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = boots
            .iter()
            .map(|b| scope.spawn(|| boot_until(b, work, &done)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("boot thread panicked".into()))
            })
            .collect()
    })
}

/// Whether the console holds a whole line (newline included) with `marker`:
/// the console arrives in chunks, and a check that fires on half a marker
/// line would read its fields cut short.
pub fn has_complete_line(log: &str, marker: &str) -> bool {
    log.split_inclusive('\n')
        .any(|l| l.ends_with('\n') && l.contains(marker))
}

/// The text after `KEY=` up to the next space, in the marker line.
pub fn marker_field(log: &str, marker: &str, key: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .map(|s| s.trim_end_matches('\r').to_string())
}
