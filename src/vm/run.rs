//! Running a VM: QEMU with the serial console on its stdout, read by a
//! thread and copied out as it arrives, until a predicate accepts it, the
//! time runs out, or QEMU exits.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::{Error, QEMU, VmConfig, qemu};

/// How often the console is offered to the predicate while it grows, and
/// how often QEMU is checked on: often enough to stop promptly, rarely
/// enough that a chatty console is not re-scanned for every byte.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The console kept in memory for matching and for the tail shown on
/// failure; older output is dropped (it is still in the log, if any).
pub const MAX_CONSOLE_BYTES: usize = 8 << 20;
/// How long the console pipe may stay open after QEMU has exited.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// What to do with the console while the VM runs.
#[derive(Default)]
pub struct Watch<'a> {
    /// Gets the console as it arrives (stdout for `osforge boot`).
    pub echo: Option<&'a mut dyn Write>,
    /// A file that gets a copy of the console.
    pub log: Option<PathBuf>,
    /// Stop (with [`Ending::TimedOut`]) after this long.
    pub timeout: Option<Duration>,
    /// Stop (with [`Ending::Matched`]) once this accepts the console so far.
    pub until: Option<&'a mut dyn FnMut(&str) -> bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Matched,
    TimedOut,
    /// QEMU exited cleanly: the guest powered off, or rebooted (`-no-reboot`).
    PoweredOff,
    /// QEMU exited with an error (a bad option, an unreadable image, ...).
    QemuFailed {
        code: Option<i32>,
    },
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub ending: Ending,
    /// The console (its last [`MAX_CONSOLE_BYTES`] at most).
    pub console: String,
    /// What QEMU printed on its stderr.
    pub qemu_stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn matched(&self) -> bool {
        self.ending == Ending::Matched
    }

    /// The console's last `lines` non-empty lines, without carriage returns
    /// and terminal control sequences (GRUB and firmware clear the screen),
    /// for showing in an error message.
    pub fn tail(&self, lines: usize) -> Vec<String> {
        let mut tail: Vec<String> = self
            .console
            .lines()
            .rev()
            .map(strip_controls)
            .filter(|l| !l.trim().is_empty())
            .take(lines)
            .collect();
        tail.reverse();
        tail
    }

    /// How the run ended, in one line.
    pub fn describe(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        match self.ending {
            Ending::Matched => format!("the console matched after {seconds:.1} s"),
            Ending::TimedOut => format!("timed out after {seconds:.0} s"),
            Ending::PoweredOff => {
                format!("the guest powered off (or rebooted) after {seconds:.1} s")
            }
            Ending::QemuFailed { code } => {
                let first = self
                    .qemu_stderr
                    .lines()
                    .find(|l| !l.contains("warning:"))
                    .unwrap_or("no message");
                let code = code.map_or("a signal".to_string(), |c| format!("status {c}"));
                format!("QEMU exited with {code} after {seconds:.1} s: {first}")
            }
        }
    }
}

/// Kills QEMU when dropped, whatever happened.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots `config` and watches its console as `watch` says; returns when the
/// run ends, with QEMU gone. QEMU is tied to the calling thread: it is killed
/// if that thread exits first (`PR_SET_PDEATHSIG`), so call this from the
/// thread that waits for it.
pub fn run(config: &VmConfig, mut watch: Watch) -> Result<Outcome, Error> {
    // Kept until QEMU is gone: removed on drop.
    let vars = copy_ovmf_vars(config)?;
    let args = qemu::command(config, vars.as_ref().map(|v| v.path()));
    let mut log = match &watch.log {
        Some(path) => Some(File::create(path).map_err(|source| Error::WritingLog {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let mut cmd = Command::new(QEMU);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The kernel kills QEMU when the thread that started it dies, even by SIGKILL.
    crate::util::process::die_with_parent(&mut cmd);
    let started = Instant::now();
    let mut qemu = Qemu(cmd.spawn().map_err(|source| Error::Spawning {
        program: QEMU.to_string(),
        source,
    })?);
    let (stdout, stderr) = (qemu.0.stdout.take(), qemu.0.stderr.take());
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let Some(mut stdout) = stdout else { return };
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    });

    let deadline = watch.timeout.map(|t| started + t);
    let mut console: Vec<u8> = Vec::new();
    let mut unchecked = false;
    let mut last_check = Instant::now();
    let mut exited_at: Option<Instant> = None;
    let ending = loop {
        let now = Instant::now();
        let wait = deadline.map_or(CHECK_INTERVAL, |d| {
            d.saturating_duration_since(now).min(CHECK_INTERVAL)
        });
        let mut closed = false;
        match rx.recv_timeout(wait) {
            Ok(chunk) => {
                // Drain what else is queued, so one check covers it all.
                let mut chunk = chunk;
                while let Ok(more) = rx.try_recv() {
                    chunk.extend_from_slice(&more);
                }
                if let Some(echo) = watch.echo.as_mut()
                    && (echo.write_all(&chunk).is_err() || echo.flush().is_err())
                {
                    // A closed stdout (`| head`) stops the copy, not the boot.
                    watch.echo = None;
                }
                if let (Some(file), Some(path)) = (log.as_mut(), &watch.log) {
                    file.write_all(&chunk).map_err(|source| Error::WritingLog {
                        path: path.clone(),
                        source,
                    })?;
                }
                append_bounded(&mut console, &chunk);
                unchecked = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        let due = closed || last_check.elapsed() >= CHECK_INTERVAL;
        if unchecked && due {
            unchecked = false;
            last_check = Instant::now();
            if let Some(until) = watch.until.as_mut()
                && until(&String::from_utf8_lossy(&console))
            {
                break Ending::Matched;
            }
        }
        if exited_at.is_none() && due && qemu.0.try_wait().map_err(Error::Waiting)?.is_some() {
            exited_at = Some(Instant::now());
        }
        // Whatever QEMU wrote before exiting is read until the pipe closes;
        // the grace period covers a pipe some other process keeps open.
        if closed || exited_at.is_some_and(|t| t.elapsed() >= EXIT_GRACE) {
            break exit_ending(qemu.0.wait().map_err(Error::Waiting)?);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Ending::TimedOut;
        }
    };
    let elapsed = started.elapsed();
    drop(qemu);
    let _ = reader.join();
    let qemu_stderr = errors.join().unwrap_or_default();
    Ok(Outcome {
        ending,
        console: String::from_utf8_lossy(&console).into_owned(),
        qemu_stderr,
        elapsed,
    })
}

/// `line` without CSI escape sequences (`ESC [ params letter`) and other
/// control characters.
fn strip_controls(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // parameters and intermediates, up to the final byte @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

fn exit_ending(status: ExitStatus) -> Ending {
    if status.success() {
        Ending::PoweredOff
    } else {
        Ending::QemuFailed {
            code: status.code(),
        }
    }
}

/// Appends, dropping the oldest half (at a line start) past the bound.
fn append_bounded(console: &mut Vec<u8>, chunk: &[u8]) {
    console.extend_from_slice(chunk);
    if console.len() > MAX_CONSOLE_BYTES {
        let half = console.len() - MAX_CONSOLE_BYTES / 2;
        let cut = console[half..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(half, |i| half + i + 1);
        console.drain(..cut);
    }
}

/// A fresh copy of the firmware's variables template for this boot, in
/// the work dir: OVMF writes to its variables, and boots run side by side.
fn copy_ovmf_vars(config: &VmConfig) -> Result<Option<tempfile::NamedTempFile>, Error> {
    let Some((code, template)) = config.firmware.ovmf() else {
        return Ok(None);
    };
    let template = config
        .ovmf_vars
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(template));
    for path in [std::path::Path::new(code), &template] {
        if !path.is_file() {
            return Err(Error::FirmwareMissing { path: path.into() });
        }
    }
    let copying = |source| Error::CopyingVars {
        from: template.clone(),
        to: config.work_dir.clone(),
        source,
    };
    let mut vars = tempfile::Builder::new()
        .prefix(&format!("{}-vars-", config.name()))
        .suffix(".fd")
        .tempfile_in(&config.work_dir)
        .map_err(copying)?;
    let mut from = File::open(&template).map_err(copying)?;
    io::copy(&mut from, vars.as_file_mut()).map_err(copying)?;
    Ok(Some(vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(console: &str, ending: Ending) -> Outcome {
        Outcome {
            ending,
            console: console.into(),
            qemu_stderr: "qemu-system-x86_64: warning: x\nqemu-system-x86_64: -drive file=/nope: Could not open '/nope'\n".into(),
            elapsed: Duration::from_millis(12_340),
        }
    }

    #[test]
    fn the_tail_is_the_last_non_empty_lines_without_carriage_returns() {
        let o = outcome("a\r\n\r\nb\r\nc\n\n", Ending::TimedOut);
        assert_eq!(o.tail(2), ["b", "c"]);
        assert_eq!(o.tail(10), ["a", "b", "c"]);
        let grub = outcome(
            "\x1b[H\x1b[J\x1b[1;1H\r\nBooting `x'\x1b[0m\r\n",
            Ending::TimedOut,
        );
        assert_eq!(grub.tail(5), ["Booting `x'"]);
    }

    #[test]
    fn a_failed_qemu_is_described_by_its_first_error_line() {
        let o = outcome("", Ending::QemuFailed { code: Some(1) });
        assert_eq!(
            o.describe(),
            "QEMU exited with status 1 after 12.3 s: qemu-system-x86_64: -drive file=/nope: Could not open '/nope'"
        );
        assert!(
            outcome("", Ending::PoweredOff)
                .describe()
                .contains("powered off")
        );
    }

    #[test]
    fn the_console_kept_is_bounded_and_cut_at_a_line_start() {
        let mut console = Vec::new();
        let line = [b'x'; 1023]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        for _ in 0..(MAX_CONSOLE_BYTES / 1024 + 10) {
            append_bounded(&mut console, &line);
        }
        assert!(console.len() <= MAX_CONSOLE_BYTES, "{}", console.len());
        assert!(console.len() >= MAX_CONSOLE_BYTES / 2 - 1024);
        assert_eq!(console[0], b'x');
        assert_eq!(console.len() % 1024, 0, "cut mid-line");
    }
}
