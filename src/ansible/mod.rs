//! Ansible playbooks run against an image tree, as OpenCHAMI's ansible
//! layers and Airship's osconfig role did, without a container engine.
//!
//! ansible-playbook runs on the build host inside the tree's working
//! container ([`WorkingContainer::run_host`]: its mounts, no chroot), with
//! an inventory osforge writes: one host, named after the image's hostname,
//! reached through `community.general.chroot` at the tree, in the groups
//! the profile gives. The user's inventory comes first on the command line
//! so its group_vars and host_vars apply, osforge's last so its connection
//! settings win over a host of the same name there; `--limit` keeps every
//! play on the image host, so no play reaches a real machine of that
//! inventory. The profile's variables are group variables of `all` in
//! osforge's inventory (Ansible's lowest precedence, so group_vars and play
//! vars override them); `extra_vars` are extra vars (`-e`, the highest).
//!
//! The chroot connection starts each module with ansible-playbook's own
//! environment, so the proxy of [`Network::environment`] reaches apt,
//! get_url and everything else that reads `http_proxy`, without a line of
//! it written into the image. Modules run with the image's python3.

mod output;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::container::{self, WorkingContainer};
use output::Failure;

/// Where modules run in the image; [`check_python`] looks for it.
pub const PYTHON: &str = "/usr/bin/python3";

/// Inside the container's /tmp, a tmpfs: module files never reach the image.
const REMOTE_TMP: &str = "/tmp/.ansible-osforge";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot run ansible-playbook (install ansible: apt-get install ansible, or deps/setup image): {0}"
    )]
    NotInstalled(std::io::Error),
    #[error(
        "the image has no {PYTHON}, which Ansible's modules run with: add python3 to the profile's packages (Debian's cloud-init brings it)"
    )]
    NoPython,
    #[error("playbook {playbook}: task '{task}' failed on {host}: {message}; full log in {log}")]
    TaskFailed {
        playbook: String,
        task: String,
        host: String,
        message: String,
        log: PathBuf,
    },
    #[error(
        "playbook {playbook}: host {host} unreachable in task '{task}': {message}; full log in {log}"
    )]
    Unreachable {
        playbook: String,
        task: String,
        host: String,
        message: String,
        log: PathBuf,
    },
    #[error("playbook {playbook}: {message}; full log in {log}")]
    Ansible {
        playbook: String,
        message: String,
        log: PathBuf,
    },
    #[error(transparent)]
    Container(#[from] container::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One playbook run against the container's tree.
pub struct Play<'a> {
    /// Absolute; ansible-playbook starts in its folder, where an
    /// `ansible.cfg` beside it applies.
    pub playbook: &'a Path,
    /// The user's inventory (file or directory), absolute.
    pub inventory: Option<&'a Path>,
    /// The image host's inventory name: the image's hostname.
    pub host: &'a str,
    pub groups: &'a [String],
    /// 0 to 4: `-v` to `-vvvv`.
    pub verbosity: u8,
    /// The profile's variables: group variables of `all`.
    pub variables: &'a BTreeMap<String, serde_json::Value>,
    pub extra_vars: &'a BTreeMap<String, serde_json::Value>,
    /// A directory outside the tree for the inventory, the extra vars and
    /// Ansible's local temporary files; left to the caller to remove.
    pub scratch: &'a Path,
}

/// ansible-playbook's version line (`ansible-playbook [core 2.14.18]`).
pub fn version() -> Result<String, Error> {
    let out = Command::new("ansible-playbook")
        .arg("--version")
        .output()
        .map_err(Error::NotInstalled)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Modules need the image's python3; without it every task would fail
/// with a "MODULE FAILURE" that does not say why.
pub fn check_python(root: &Path) -> Result<(), Error> {
    match crate::osconfig::rootpath::resolve(root, Path::new(PYTHON), true) {
        Ok(path) if path.is_file() => Ok(()),
        _ => Err(Error::NoPython),
    }
}

/// The inventory osforge writes (JSON, which Ansible's YAML inventory reads).
fn inventory(play: &Play<'_>, root: &Path) -> serde_json::Value {
    let host = serde_json::json!({
        "ansible_connection": "community.general.chroot",
        "ansible_host": root,
        "ansible_python_interpreter": PYTHON,
    });
    let children: serde_json::Map<String, serde_json::Value> = play
        .groups
        .iter()
        .map(|g| (g.clone(), serde_json::json!({ "hosts": { play.host: {} } })))
        .collect();
    serde_json::json!({
        "all": {
            "hosts": { play.host: host },
            "vars": play.variables,
            "children": children,
        }
    })
}

/// What ansible-playbook gets besides the arguments. Set here rather than
/// left to an ansible.cfg, since osforge reads the output and needs the
/// default callback with one-line JSON results; environment variables win
/// over any configuration file.
fn environment(scratch: &Path) -> Vec<(String, String)> {
    let local_tmp = scratch.join("tmp").to_string_lossy().into_owned();
    [
        ("ANSIBLE_STDOUT_CALLBACK", "default"),
        ("ANSIBLE_CALLBACK_RESULT_FORMAT", "json"),
        ("ANSIBLE_CALLBACK_FORMAT_PRETTY", "false"),
        ("ANSIBLE_DISPLAY_FAILED_STDERR", "false"),
        ("ANSIBLE_NOCOLOR", "1"),
        ("ANSIBLE_FORCE_COLOR", "0"),
        ("ANSIBLE_NOCOWS", "1"),
        ("ANSIBLE_RETRY_FILES_ENABLED", "false"),
        // The chroot connection pipes modules to python: no copies through dd.
        ("ANSIBLE_PIPELINING", "true"),
        ("ANSIBLE_REMOTE_TMP", REMOTE_TMP),
        ("ANSIBLE_LOCAL_TEMP", &local_tmp),
        // No __pycache__ in the user's library/ or filter_plugins/: it
        // would change the digests the stage's cache key holds.
        ("PYTHONDONTWRITEBYTECODE", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn argv(play: &Play<'_>, generated: &Path, extra_vars: Option<&Path>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["ansible-playbook".into()];
    if play.verbosity > 0 {
        argv.push(format!("-{}", "v".repeat(play.verbosity.into())).into());
    }
    if let Some(user) = play.inventory {
        argv.extend(["-i".into(), user.as_os_str().to_owned()]);
    }
    argv.extend(["-i".into(), generated.as_os_str().to_owned()]);
    argv.extend(["--limit".into(), play.host.into()]);
    if let Some(file) = extra_vars {
        let mut arg = OsString::from("@");
        arg.push(file);
        argv.extend(["-e".into(), arg]);
    }
    argv.push(play.playbook.as_os_str().to_owned());
    argv
}

/// Runs the playbook; returns the host's recap (`ok=5 changed=2`). Output
/// goes to the container's log; `echo` gets each stdout line too.
pub fn run_playbook(
    container: &WorkingContainer,
    play: &Play<'_>,
    echo: impl FnMut(&str),
) -> Result<String, Error> {
    let name = play
        .playbook
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let generated = play.scratch.join("osforge-inventory.yml");
    let text = serde_json::to_vec_pretty(&inventory(play, container.root()))
        .expect("inventories serialise");
    std::fs::create_dir_all(play.scratch.join("tmp")).map_err(io(play.scratch))?;
    std::fs::write(&generated, text).map_err(io(&generated))?;
    let extra_vars = if play.extra_vars.is_empty() {
        None
    } else {
        let file = play.scratch.join("extra-vars.json");
        let text = serde_json::to_vec(play.extra_vars).expect("variables serialise");
        std::fs::write(&file, text).map_err(io(&file))?;
        Some(file)
    };
    let log = container.log_path();
    let start = std::fs::metadata(log).map_or(0, |m| m.len());
    let cwd = play.playbook.parent().unwrap_or(Path::new("/"));
    let result = container.run_host(
        &format!("ansible-playbook {name}"),
        &argv(play, &generated, extra_vars.as_deref()),
        &environment(play.scratch),
        cwd,
        echo,
    );
    let output = read_from(log, start)?;
    match (result, output::last_failure(&output)) {
        (Ok(()), _) => Ok(output::recap(&output, play.host).unwrap_or_default()),
        (Err(container::Error::Failed { .. }), Some(failure)) => Err(explain(failure, name, log)),
        (Err(e), _) => Err(e.into()),
    }
}

fn explain(failure: Failure, playbook: String, log: &Path) -> Error {
    let log = log.to_path_buf();
    match failure {
        Failure::Task {
            task,
            host,
            message,
        } => Error::TaskFailed {
            playbook,
            task,
            host,
            message,
            log,
        },
        Failure::Unreachable {
            task,
            host,
            message,
        } => Error::Unreachable {
            playbook,
            task,
            host,
            message,
            log,
        },
        Failure::Error { message } => Error::Ansible {
            playbook,
            message,
            log,
        },
    }
}

/// The log from byte `start` on: this run's output.
fn read_from(log: &Path, start: u64) -> Result<String, Error> {
    let mut file = std::fs::File::open(log).map_err(io(log))?;
    file.seek(std::io::SeekFrom::Start(start))
        .map_err(io(log))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(log))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play<'a>(
        groups: &'a [String],
        vars: &'a BTreeMap<String, serde_json::Value>,
        user: Option<&'a Path>,
    ) -> Play<'a> {
        Play {
            playbook: Path::new("/p/site.yml"),
            inventory: user,
            host: "imagehost",
            groups,
            verbosity: 2,
            variables: vars,
            extra_vars: vars,
            scratch: Path::new("/s"),
        }
    }

    #[test]
    fn the_image_host_is_a_chroot_in_its_groups_with_the_profile_variables() {
        let groups = vec!["compute".to_string(), "site_a".to_string()];
        let vars = BTreeMap::from([("motd".to_string(), serde_json::json!("hi"))]);
        let inv = inventory(&play(&groups, &vars, None), Path::new("/cache/root"));
        let host = &inv["all"]["hosts"]["imagehost"];
        assert_eq!(host["ansible_connection"], "community.general.chroot");
        assert_eq!(host["ansible_host"], "/cache/root");
        assert_eq!(inv["all"]["vars"]["motd"], "hi");
        assert!(inv["all"]["children"]["site_a"]["hosts"]["imagehost"].is_object());
    }

    #[test]
    fn the_user_inventory_comes_first_and_every_play_is_limited_to_the_image() {
        let vars = BTreeMap::new();
        let user = Path::new("/site/inventory.ini");
        let args: Vec<String> = argv(
            &play(&[], &vars, Some(user)),
            Path::new("/s/osforge-inventory.yml"),
            Some(Path::new("/s/extra-vars.json")),
        )
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
        assert_eq!(
            args,
            [
                "ansible-playbook",
                "-vv",
                "-i",
                "/site/inventory.ini",
                "-i",
                "/s/osforge-inventory.yml",
                "--limit",
                "imagehost",
                "-e",
                "@/s/extra-vars.json",
                "/p/site.yml"
            ]
        );
    }
}
