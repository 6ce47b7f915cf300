//! Working containers: a root filesystem tree in which osforge runs the
//! distribution's package manager, a profile's `cmds:` and Ansible.
//!
//! osforge's own namespace sandbox, the way mmdebstrap and mkosi run their
//! chroots: `unshare(1)` gives the commands a private mount and PID namespace,
//! in which /proc, /sys (read-only), a minimal /dev, /run and /tmp are mounted
//! over the tree before `chroot`. When the commands end (or are killed) the
//! namespaces die with every mount and every process in them, so nothing
//! leaks into the host and nothing is left mounted in the tree. Compared
//! with buildah's `--isolation chroot`, which does the same inside a
//! container store, it works on the unpacked tree in place: no copy into and
//! out of containers/storage for each layer.
//!
//! Within the tree, for the time of the run only: the build host's
//! resolv.conf (so apt resolves names) and a `policy-rc.d` that stops
//! maintainer scripts from starting services. Both are put back as they were
//! by [`WorkingContainer::close`]. A proxy reaches the commands through the
//! environment only, so it is never written into the image.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::rootfs::Network;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the working container (unshare): {0}")]
    Spawn(std::io::Error),
    #[error("{what} failed ({status}) in the working container: {last_line}; full log in {log}")]
    Failed {
        what: String,
        status: std::process::ExitStatus,
        last_line: String,
        log: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Mounts what package managers and maintainer scripts need over the tree
/// "$1", then runs the command given as "$2" with `sh -c` chrooted in it, or,
/// when "$2" is `--host`, the build host's program and arguments that follow
/// (not chrooted). `set -e`: a mount that fails stops the run before anything
/// touches the tree.
const SETUP: &str = r#"set -e
r=$1
shift
mount -t proc proc "$r/proc"
mount -t sysfs -o ro sysfs "$r/sys" 2>/dev/null || true
mount -t tmpfs -o mode=0755,nosuid dev "$r/dev"
for d in null zero full random urandom tty; do
  : > "$r/dev/$d"
  mount --bind "/dev/$d" "$r/dev/$d"
done
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts" 2>/dev/null || true
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
mount -t tmpfs tmpfs "$r/dev/shm"
mount -t tmpfs -o mode=0755 run "$r/run"
mount -t tmpfs -o mode=1777 tmp "$r/tmp"
if [ "$1" = --host ]; then
  shift
  exec "$@"
fi
exec chroot "$r" /bin/sh -c "$1"
"#;

const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";
const RESOLV_CONF: &str = "etc/resolv.conf";
const SAVED_SUFFIX: &str = ".osforge-saved";

/// An open working container over `root`; [`close`](Self::close) puts the
/// tree back as it was (apart from what the commands did).
pub struct WorkingContainer {
    /// The proxy's password, hidden in the log and in errors.
    secret: Option<String>,
    root: PathBuf,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    /// The temporary files set into the tree, and whether each replaced one.
    placed: Vec<(PathBuf, bool)>,
}

impl WorkingContainer {
    /// Prepares `root` (an unpacked root filesystem) for commands; their
    /// output is appended to `log_path`.
    pub fn open(root: &Path, network: &Network, log_path: &Path) -> Result<Self, Error> {
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOME".into(), "/root".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
            ("DEBCONF_NONINTERACTIVE_SEEN".into(), "true".into()),
        ];
        env.extend(network.environment());
        let mut container = WorkingContainer {
            root: root.to_path_buf(),
            env,
            log_path: log_path.to_path_buf(),
            placed: Vec::new(),
            secret: network.secret().map(str::to_string),
        };
        container.place(
            POLICY_RC_D,
            b"#!/bin/sh\n# osforge: no services start while the image is built.\nexit 101\n",
            0o755,
        )?;
        let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
        container.place(RESOLV_CONF, &resolv, 0o644)?;
        Ok(container)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Sets `relative` in the tree for the time of the run, keeping what was there.
    fn place(&mut self, relative: &str, contents: &[u8], mode: u32) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root.join(relative);
        let saved = saved_path(&path);
        let existed = fs::symlink_metadata(&path).is_ok();
        if existed {
            fs::rename(&path, &saved).map_err(io(&path))?;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&path, contents).map_err(io(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io(&path))?;
        self.placed.push((path, existed));
        Ok(())
    }

    /// Sets SOURCE_DATE_EPOCH for what runs inside: dpkg, Python's byte
    /// compiler and shadow's account dates then write the same bytes each time.
    pub fn set_source_date_epoch(&mut self, epoch: Option<u64>) {
        self.env.retain(|(k, _)| k != "SOURCE_DATE_EPOCH");
        if let Some(epoch) = epoch {
            self.env
                .push(("SOURCE_DATE_EPOCH".into(), epoch.to_string()));
        }
    }

    /// Runs `script` with `/bin/sh -c` inside the container. Output goes to
    /// the log; each line is also passed to `echo` (for INFO-level commands).
    pub fn run(&self, what: &str, script: &str, echo: impl FnMut(&str)) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.arg(script);
        self.spawn_logged(what, &format!("$ {script}"), cmd, echo)
    }

    /// Runs a program of the build host, not of the image, in the container's
    /// namespaces: the tree's mounts are set up as for [`run`](Self::run), but
    /// nothing is chrooted. For tools that reach into the tree themselves, as
    /// ansible-playbook does through its chroot connection: they run from the
    /// host with their own Python and files, and what they start in the tree
    /// finds /proc, /dev and /run there. `env` is added to the container's
    /// environment, whose PATH and HOME are the build host's here (where the
    /// program and its user files are found); the program starts in `cwd`.
    pub fn run_host(
        &self,
        what: &str,
        argv: &[OsString],
        env: &[(String, String)],
        cwd: &Path,
        echo: impl FnMut(&str),
    ) -> Result<(), Error> {
        let mut cmd = self.command();
        cmd.arg("--host").args(argv).current_dir(cwd);
        for var in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let shown: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        self.spawn_logged(what, &format!("$ (host) {}", shown.join(" ")), cmd, echo)
    }

    /// `unshare` with the setup script and the tree, in the container's
    /// environment; the caller adds what runs.
    fn command(&self) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SETUP,
            "osforge-container",
        ])
        .arg(&self.root)
        .env_clear()
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd
    }

    /// Runs `cmd`, appending its output to the log after a header naming
    /// `what` and `shown`; stdout lines also go to `echo`.
    fn spawn_logged(
        &self,
        what: &str,
        shown: &str,
        mut cmd: Command,
        mut echo: impl FnMut(&str),
    ) -> Result<(), Error> {
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io(&self.log_path))?;
        let header = crate::util::redact::secrets(
            &format!("### osforge: {what}\n### {shown}"),
            self.secret.as_deref().as_slice(),
        );
        let _ = writeln!(log, "{header}");
        // The container dies with osforge, even when osforge is killed.
        crate::util::process::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(Error::Spawn)?;
        crate::util::process::track(&child);
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        // stderr is drained on its own thread so that neither pipe fills up.
        let err_log = log.try_clone().map_err(io(&self.log_path))?;
        let secret = self.secret.clone();
        let err_thread =
            std::thread::spawn(move || copy_lines(stderr, err_log, secret.as_deref(), |_| {}));
        let mut last = copy_lines(stdout, log, self.secret.as_deref(), &mut echo);
        let err_last = err_thread.join().unwrap_or_default();
        let status = child.wait().map_err(Error::Spawn);
        crate::util::process::untrack(&child);
        let status = status?;
        if !status.success() {
            if err_last.is_some() {
                last = err_last;
            }
            return Err(Error::Failed {
                what: what.to_string(),
                status,
                last_line: last.unwrap_or_else(|| "no output".into()),
                log: self.log_path.clone(),
            });
        }
        Ok(())
    }

    /// Puts back what [`open`](Self::open) replaced.
    pub fn close(mut self) -> Result<(), Error> {
        self.restore()
    }

    fn restore(&mut self) -> Result<(), Error> {
        for (path, existed) in self.placed.drain(..).rev() {
            // The commands may have replaced it (a package's resolv.conf link).
            let _ = fs::remove_file(&path);
            if existed {
                fs::rename(saved_path(&path), &path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

impl Drop for WorkingContainer {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

fn saved_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(SAVED_SUFFIX);
    path.with_file_name(name)
}

/// Copies `from` into `to` line by line; returns the last non-empty line.
/// Lines go through `secret` hiding: a tool run at high verbosity may print
/// its environment, proxy password included.
fn copy_lines(
    from: impl std::io::Read,
    mut to: File,
    secret: Option<&str>,
    mut each: impl FnMut(&str),
) -> Option<String> {
    let mut last = None;
    for line in BufReader::new(from).split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        let text = crate::util::redact::secrets(&text, secret.as_slice());
        let _ = to.write_all(text.as_bytes());
        let _ = to.write_all(b"\n");
        let text = text.trim_end();
        each(text);
        if !text.trim().is_empty() {
            last = Some(text.trim().to_string());
        }
    }
    last
}
