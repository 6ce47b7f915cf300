//! The per-host end of a build: one host from the command line, or every
//! host of a hosts file (`--hosts`), each with its own artifacts.
//!
//! All hosts share the stages before this one (bootstrap, configure and, for
//! ISOs and netboot sets, the squashfs); what differs per host is only its
//! seed, kernel command line and file name, so its artifacts are cheap and
//! are written side by side, at most `--jobs` at a time. The squashfs is made
//! once, by the first ISO or netboot job that needs it, while disk jobs
//! (which do not) already run.
//!
//! Everything is written to a staging folder inside the output directory and
//! moved into place only when every host's artifacts, checksums and manifests
//! exist ([`Staging::publish`]): a build that fails for one host leaves the
//! output directory as it was for all of them.

use super::cache::output_full;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::Context;
use serde::Serialize;

use super::{
    Artifact, ArtifactType, BuildRequest, Log, StageOutput, StageReport, make_disk, make_live_iso,
    make_squashfs, render_host,
};
use crate::manifest::DebPackage;
use crate::profile::HostRender;
use crate::util::cleanup;

/// One host's artifacts: their file name (without extension) and what the
/// host gets.
pub struct Target {
    pub name: String,
    pub host: HostRender,
}

/// A host and the artifacts written for it, for the report.
#[derive(Debug, Serialize)]
pub struct HostReport {
    /// The artifacts' file name without extension.
    pub name: String,
    pub hostname: String,
    pub kernel_cmdline: String,
    pub artifacts: Vec<Artifact>,
}

/// The hosts of this build, rendered before any stage runs: a template, a
/// variable or a kernel parameter that is wrong for one host fails the build
/// before minutes of bootstrapping.
pub(super) fn targets(req: &BuildRequest) -> anyhow::Result<Vec<Target>> {
    let Some(file) = &req.hosts else {
        return Ok(vec![Target {
            name: req.name.clone(),
            host: render_host(req)?,
        }]);
    };
    file.hosts
        .iter()
        .map(|entry| {
            let host = entry
                .render(&req.profile, req.cmdline_append.as_deref(), &req.host_files)
                .map_err(|e| e.into_input_error())?;
            Ok(Target {
                name: entry.name.clone(),
                host,
            })
        })
        .collect()
}

/// One unit of work: a host's ISO, or its disk images (qcow2 and raw are one
/// job: both are written from the same filesystems).
#[derive(Clone, Copy)]
enum Job {
    Iso(usize),
    Disk(usize),
    /// Host-independent; the index says whose artifacts list it joins.
    Oci(usize),
    /// The netboot set's kernel, initrd and squashfs: shared, like Oci.
    NetbootShared(usize),
    /// A host's iPXE script, GRUB config and seed.
    NetbootHost(usize),
}

type JobOutcome = (anyhow::Result<Vec<Artifact>>, Vec<StageReport>);

/// Every host's artifacts in `dir`, host by host in the order of `targets`,
/// each host's in the order the types were asked for. The first failure
/// stops jobs not yet started and fails the build.
pub(super) fn make_artifacts(
    req: &BuildRequest,
    targets: &[Target],
    dir: &Path,
    configured: &StageOutput,
    packages: &[DebPackage],
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<Vec<Vec<Artifact>>> {
    let disk_types: Vec<ArtifactType> = req.types.iter().copied().filter(|t| t.is_disk()).collect();
    let iso = req.types.contains(&ArtifactType::Iso);
    let netboot = req.types.contains(&ArtifactType::Netboot);
    let jobs: Vec<Job> = (0..targets.len())
        .flat_map(|i| {
            let iso_job = iso.then_some(Job::Iso(i));
            let disk_job = (!disk_types.is_empty()).then_some(Job::Disk(i));
            let netboot_job = netboot.then_some(Job::NetbootHost(i));
            iso_job.into_iter().chain(disk_job).chain(netboot_job)
        })
        // The OCI image and the netboot set's kernel, initrd and squashfs
        // have nothing per host: one each, listed with the first host.
        .chain(
            req.types
                .contains(&ArtifactType::Oci)
                .then_some(Job::Oci(0)),
        )
        .chain(netboot.then_some(Job::NetbootShared(0)))
        .collect();
    // Shared by the ISO jobs: the first one makes it, the others wait. The
    // error is kept as text, since every waiting job reports it.
    let squashfs: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let squashfs_stages = Mutex::new(Vec::new());
    // With --hosts, a host's failure names the host.
    let of_host = |i: usize, result: anyhow::Result<Vec<Artifact>>| match &req.hosts {
        Some(_) => result.with_context(|| format!("host {}", targets[i].name)),
        None => result,
    };
    let shared_squashfs = || {
        squashfs
            .get_or_init(|| {
                let mut shared = Vec::new();
                let made = make_squashfs(req, configured, log, &mut shared);
                lock(&squashfs_stages).extend(shared);
                made.map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(anyhow::Error::msg)
    };
    let run = |job: Job| -> JobOutcome {
        let mut own = Vec::new();
        let result = match job {
            Job::Iso(i) => shared_squashfs().and_then(|sqfs| {
                let iso = make_live_iso(req, &targets[i], dir, configured, &sqfs, log, &mut own)
                    .map_err(|e| {
                        let needed = std::fs::metadata(&sqfs).ok().map(|m| {
                            format!(
                                "the live ISO needs more than its squashfs's {}",
                                crate::util::size::human_bytes(m.len())
                            )
                        });
                        output_full(e, dir, needed)
                    });
                of_host(i, iso.map(|a| vec![a]))
            }),
            Job::Disk(i) => {
                let disks = make_disk(
                    req,
                    &targets[i],
                    dir,
                    configured,
                    packages,
                    &disk_types,
                    log,
                    &mut own,
                )
                .map_err(|e| output_full(e, dir, None));
                of_host(i, disks)
            }
            Job::Oci(_) => super::oci::make_oci(req, dir, configured, packages, log, &mut own)
                .map(|a| vec![a])
                .map_err(|e| output_full(e, dir, None)),
            Job::NetbootShared(_) => shared_squashfs().and_then(|sqfs| {
                super::netboot::make_shared(req, dir, configured, &sqfs, log, &mut own)
                    .map_err(|e| output_full(e, dir, None))
            }),
            Job::NetbootHost(i) => {
                let set = super::netboot::make_host(req, &targets[i], dir, log, &mut own);
                of_host(i, set)
            }
        };
        (result, own)
    };
    let started = std::time::Instant::now();
    let workers = req.jobs.clamp(1, jobs.len().max(1));
    let outcomes = run_bounded(&jobs, workers, run);
    let squashfs_stages = squashfs_stages
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if targets.len() > 1 {
        // Per host: what the hosts cost beyond the shared squashfs.
        let shared: f64 = squashfs_stages.iter().map(|s| s.seconds).sum();
        let seconds = started.elapsed().as_secs_f64() - shared;
        log.info(&format!(
            "hosts: {} hosts' artifacts in {seconds:.1} s ({:.2} s per host, {workers} at a time)",
            targets.len(),
            seconds / targets.len() as f64
        ));
    }

    stages.extend(squashfs_stages);
    let mut by_host: Vec<Vec<Artifact>> = targets.iter().map(|_| Vec::new()).collect();
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let Some((result, own)) = outcome else {
            continue; // not started: an earlier job failed
        };
        stages.extend(own);
        let (Job::Iso(i)
        | Job::Disk(i)
        | Job::Oci(i)
        | Job::NetbootShared(i)
        | Job::NetbootHost(i)) = *job;
        by_host[i].extend(result?);
    }
    for artifacts in &mut by_host {
        artifacts.sort_by_key(|a| req.types.iter().position(|t| *t == a.kind));
    }
    Ok(by_host)
}

/// Runs `run` for each job on `limit` threads, in order of start;
/// after a failure no new job starts. Outcomes are in job order, `None` for
/// jobs that did not start.
fn run_bounded<J: Copy + Sync>(
    jobs: &[J],
    limit: usize,
    run: impl Fn(J) -> JobOutcome + Sync,
) -> Vec<Option<JobOutcome>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outcomes: Vec<Mutex<Option<JobOutcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..limit {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= jobs.len() || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let outcome = run(jobs[i]);
                    if outcome.0.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    *lock(&outcomes[i]) = Some(outcome);
                }
            });
        }
    });
    outcomes
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hidden folder in the output directory (same file system, so moving out
/// of it is a rename) that holds a build's files until all of them exist.
/// Removed when dropped, and by the signal handler if osforge is interrupted.
pub(super) struct Staging {
    dir: tempfile::TempDir,
    out: PathBuf,
    /// Held while the build runs: a staging folder whose lock is free was
    /// left by a killed build, and the next build removes it.
    _lock: std::fs::File,
}

const STAGING_PREFIX: &str = ".osforge-tmp-build-";
const STAGING_LOCK: &str = ".lock";
/// Where folders the build replaces go (see [`Staging::publish`]).
const STAGING_REPLACED: &str = ".replaced";

impl Staging {
    /// Creates `out` (only once every input is checked, so bad input leaves
    /// no trace) and checks that a file can be made in it.
    pub fn check_writable(out: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating the output directory {}", out.display()))?;
        tempfile::Builder::new()
            .prefix(".osforge-tmp-probe-")
            .tempfile_in(out)
            .with_context(|| format!("writing in the output directory {}", out.display()))?;
        Ok(())
    }

    pub fn new(out: &Path) -> anyhow::Result<Staging> {
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating the output directory {}", out.display()))?;
        remove_stale(out);
        let dir = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(out)
            .with_context(|| format!("creating a staging folder in {}", out.display()))?;
        cleanup::register(dir.path());
        let lock_path = dir.path().join(STAGING_LOCK);
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        Ok(Staging {
            dir,
            out: out.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Moves every staged file into the output directory, each artifact
    /// before the checksum and manifest files named after it, and points
    /// the artifacts' paths there. Returns the files' new paths.
    pub fn publish(self, by_host: &mut [Vec<Artifact>]) -> anyhow::Result<Vec<PathBuf>> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir())
            .with_context(|| format!("listing {}", self.dir().display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        names.retain(|n| n != STAGING_LOCK && n != STAGING_REPLACED);
        let mut moved = Vec::new();
        for name in names {
            let (from, to) = (self.dir().join(&name), self.out.join(&name));
            if from.is_dir() && to.is_dir() {
                // A folder (a netboot seed) cannot replace a folder in one
                // rename: the old one goes into the staging folder, which is
                // removed with it.
                let old = self.dir().join(STAGING_REPLACED).join(&name);
                std::fs::create_dir_all(self.dir().join(STAGING_REPLACED))?;
                std::fs::rename(&to, &old)
                    .with_context(|| format!("moving the old {} aside", to.display()))?;
            }
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} into place", to.display()))?;
            if to.is_dir() {
                // A netboot seed: its files are what gets published.
                let mut inside: Vec<PathBuf> = std::fs::read_dir(&to)?
                    .map(|e| e.map(|e| e.path()))
                    .collect::<Result<_, _>>()?;
                inside.sort();
                moved.extend(inside);
            } else {
                moved.push(to);
            }
        }
        for a in by_host.iter_mut().flatten() {
            a.move_to(&self.out);
        }
        Ok(moved)
    }
}

/// Removes staging folders of killed builds (SIGKILL gives no chance to
/// clean up): those whose lock no live build holds.
fn remove_stale(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            continue;
        }
        let Ok(lock) = std::fs::File::open(entry.path().join(STAGING_LOCK)) else {
            continue; // being created or removed right now
        };
        // SAFETY: flock on a descriptor we own.
        let free = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } == 0;
        if free {
            cleanup::remove_dir_all_retrying(&entry.path());
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        cleanup::unregister(self.dir.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_at_most_limit_at_a_time_and_none_start_after_a_failure() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let jobs: Vec<usize> = (0..8).collect();
        let outcomes = run_bounded(&jobs, 3, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            running.fetch_sub(1, Ordering::SeqCst);
            (Ok(Vec::new()), Vec::new())
        });
        assert!(outcomes.iter().all(Option::is_some));
        assert_eq!(most.load(Ordering::SeqCst), 3);

        let outcomes = run_bounded(&jobs, 1, |j| {
            let result = if j == 2 {
                Err(anyhow::anyhow!("host 2 failed"))
            } else {
                Ok(Vec::new())
            };
            (result, Vec::new())
        });
        let started: Vec<bool> = outcomes.iter().map(Option::is_some).collect();
        assert_eq!(
            started,
            [true, true, true, false, false, false, false, false]
        );
        assert!(outcomes[2].as_ref().unwrap().0.is_err());
    }
}
