//! A hosts file: many hosts of one profile, for `osforge build --hosts FILE`.
//!
//! ```yaml
//! hosts:
//!   - name: node-1                      # the hostname variable and the file name (OUT/node-1.iso)
//!     vars: {ipv4_address: 10.0.0.11/24, nics: [{mac: "52:54:00:00:00:01"}]}
//!     ssh_authorized_keys: ["ssh-ed25519 AAAA... ops@site"]
//!     cmdline_append: "ipv6.disable=1"  # after the profile's and --cmdline-append's
//!     network_data: node-1/network_data.json   # as --network-data; relative to this file
//!     user_data: node-1/user-data              # as --user-data
//! ```
//!
//! The file is read like a profile (the same YAML options, one-line errors with
//! file, line and key path) and checked whole against the profile before any
//! stage runs. All hosts share one configured rootfs and one squashfs, so a
//! variable that an OS value uses (and so the configure stage's key) cannot be
//! set per host: that would need a rootfs per host, which is what separate
//! builds are for, so it is refused rather than silently multiplying the work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::de::from_node;
use super::error::{KeyPath, ProfileError, SourceLocation};
use super::freeze::{check_variable, is_inside};
use super::load::{BUILTIN_VARIABLES, SearchPath, no_such_variable, tidy};
use super::model::Profile;
use super::node::{Node, Origin, Value};
use super::render::{HostFiles, HostRender, check_user_data};
use super::schema::{Hostname, SshKey};
use super::{check_param, split_params};
use crate::netconfig::HostNetwork;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsDoc {
    hosts: Vec<HostDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostDoc {
    name: Hostname,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
    ssh_authorized_keys: Option<Vec<SshKey>>,
    cmdline_append: Option<String>,
    network_data: Option<String>,
    user_data: Option<String>,
}

/// The hosts of a hosts file, checked against the profile they are built from.
#[derive(Debug, Clone)]
pub struct HostsFile {
    pub path: PathBuf,
    pub hosts: Vec<HostEntry>,
}

/// One host: what it gets beside the profile and the command line.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// Its host name, also its artifacts' file name.
    pub name: String,
    /// Its variables, `hostname` (its name) included.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Kernel parameters after the profile's and `--cmdline-append`'s.
    pub cmdline_append: Option<String>,
    /// Its own network and user-data files; what it lacks comes from the
    /// command line's `--network-data` and `--user-data`.
    pub files: HostFiles,
    /// Where the entry is written, for errors found when it is rendered.
    at: (SourceLocation, KeyPath),
}

impl HostsFile {
    /// Reads and checks `path` against `profile` (after its `--var`s). Files
    /// a host names are read relative to the hosts file and, as a profile's,
    /// must stay inside its folder unless `search` allows otherwise.
    pub fn load(
        path: &Path,
        profile: &Profile,
        search: &SearchPath,
    ) -> Result<HostsFile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::reading(path, e))?;
        let tree = Node::parse(&text, path)?;
        if !matches!(tree.value, Value::Map(_)) {
            return Err(tree.origin.error(format!(
                "a hosts file is a map with a 'hosts' list, not {}",
                tree.kind()
            )));
        }
        let doc: HostsDoc = from_node(&tree)?;
        let list = KeyPath::root().key("hosts");
        if doc.hosts.is_empty() {
            return Err(node_at(&tree, &list).error("expected at least one host"));
        }
        let reader = EntryReader {
            tree: &tree,
            profile,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            allow_outside: search.allow_files_outside,
        };
        let mut hosts: Vec<HostEntry> = Vec::with_capacity(doc.hosts.len());
        for (i, host) in doc.hosts.into_iter().enumerate() {
            let at = list.index(i);
            // Host names are case-insensitive, and so are some file systems.
            if let Some(first) = hosts
                .iter()
                .position(|h| h.name.eq_ignore_ascii_case(&host.name))
            {
                let first_line = node_at(&tree, &list.index(first).key("name")).line;
                return Err(node_at(&tree, &at.key("name")).error(format!(
                    "host name '{}' is given twice (first at hosts[{first}], line {first_line}); each host needs its own name",
                    host.name
                )));
            }
            hosts.push(reader.entry(host, &at)?);
        }
        Ok(HostsFile {
            path: path.to_path_buf(),
            hosts,
        })
    }
}

impl HostEntry {
    /// The host's seed and kernel command line: the profile with the host's
    /// variables, `cmdline_append` (the command line's) then the host's own.
    pub fn render(
        &self,
        profile: &Profile,
        cmdline_append: Option<&str>,
        defaults: &HostFiles,
    ) -> Result<HostRender, ProfileError> {
        let mut own = profile.clone();
        own.variables
            .extend(self.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        let files = HostFiles {
            network: self.files.network.clone().or(defaults.network.clone()),
            user_data: self.files.user_data.clone().or(defaults.user_data.clone()),
        };
        let (at, path) = &self.at;
        let here = |message: String| {
            ProfileError::invalid(
                at.clone(),
                path.clone(),
                format!("host {}: {message}", self.name),
            )
        };
        let mut host = own
            .render_host_with(cmdline_append, &files)
            .map_err(|e| here(e.to_string()))?;
        if let Some(extra) = &self.cmdline_append {
            host.kernel_cmdline
                .append(extra)
                .map_err(|m| here(format!("cmdline_append: {m}")))?;
        }
        Ok(host)
    }
}

/// Checks one entry against the profile, at its place in the file.
struct EntryReader<'a> {
    tree: &'a Node,
    profile: &'a Profile,
    /// The hosts file's folder: host files are relative to it.
    dir: PathBuf,
    allow_outside: bool,
}

impl EntryReader<'_> {
    fn entry(&self, host: HostDoc, at: &KeyPath) -> Result<HostEntry, ProfileError> {
        let name = host.name.to_string();
        // The name is the hostname variable, per host like any other.
        if let Some(os_key) = self.profile.os_key_using("hostname") {
            return Err(node_at(self.tree, &at.key("name"))
                .error(changes_the_os(&name, "hostname", os_key)));
        }
        let mut vars = host.vars;
        for (key, value) in &vars {
            self.check_var(&name, key, value)
                .map_err(|m| node_at(self.tree, &at.key("vars").key(key.as_str())).error(m))?;
        }
        if let Some(keys) = host.ssh_authorized_keys {
            let origin = node_at(self.tree, &at.key("ssh_authorized_keys"));
            if vars.contains_key("ssh_authorized_keys") {
                return Err(origin.error("given twice: here and in vars"));
            }
            let value = serde_json::json!(keys.iter().map(|k| k.as_str()).collect::<Vec<_>>());
            self.check_var(&name, "ssh_authorized_keys", &value)
                .map_err(|m| origin.error(m))?;
            vars.insert("ssh_authorized_keys".into(), value);
        }
        vars.insert("hostname".into(), serde_json::json!(name));
        if let Some(text) = &host.cmdline_append {
            check_params(text)
                .map_err(|m| node_at(self.tree, &at.key("cmdline_append")).error(m))?;
        }
        let network = match &host.network_data {
            Some(relative) => {
                let file = self.host_file(at, "network_data", relative)?;
                let network = HostNetwork::load(&file).map_err(|e| {
                    node_at(self.tree, &at.key("network_data")).error(e.to_string())
                })?;
                Some(network)
            }
            None => None,
        };
        let user_data = match &host.user_data {
            Some(relative) => {
                let file = self.host_file(at, "user_data", relative)?;
                let origin = node_at(self.tree, &at.key("user_data"));
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| origin.error(ProfileError::reading(&file, e).to_string()))?;
                check_user_data(&text)
                    .map_err(|m| origin.error(format!("{}: {m}", file.display())))?;
                Some((file, text))
            }
            None => None,
        };
        let origin = node_at(self.tree, at);
        Ok(HostEntry {
            name,
            vars,
            cmdline_append: host.cmdline_append,
            files: HostFiles { network, user_data },
            at: (origin.location(), origin.path.clone()),
        })
    }

    /// A variable must be one the profile declares, hold a value osforge
    /// accepts, and leave the OS configuration alone (see the module doc).
    fn check_var(&self, host: &str, key: &str, value: &serde_json::Value) -> Result<(), String> {
        let profile = self.profile;
        if key == "hostname" {
            return Err(format!(
                "the host name is the host's 'name' ({host}); hostname cannot be set in vars"
            ));
        }
        if !profile.variables.contains_key(key) && !BUILTIN_VARIABLES.contains(&key) {
            return Err(no_such_variable(
                &profile.name,
                key,
                profile.variables.keys().map(String::as_str),
            ));
        }
        check_variable(key, value)?;
        if let Some(os_key) = profile.os_key_using(key) {
            return Err(changes_the_os(host, key, os_key));
        }
        Ok(())
    }

    /// A file a host names, relative to the hosts file, kept inside its folder.
    fn host_file(&self, at: &KeyPath, key: &str, relative: &str) -> Result<PathBuf, ProfileError> {
        let file = tidy(&self.dir.join(relative));
        if !(self.allow_outside || is_inside(&self.dir, &file)) {
            return Err(node_at(self.tree, &at.key(key)).error(format!(
                "'{relative}' is outside the hosts file's folder {}/ (set {}=1 to allow it)",
                self.dir.display(),
                SearchPath::ALLOW_OUTSIDE_ENV
            )));
        }
        Ok(file)
    }
}

fn changes_the_os(host: &str, var: &str, os_key: &str) -> String {
    format!(
        "host {host}: variable '{var}' is used in the OS configuration ({os_key}), but --hosts builds one configured rootfs for all hosts; set it with --var for every host, or build this host on its own"
    )
}

/// The origin of the node at `path`, or of its nearest ancestor.
fn node_at<'a>(tree: &'a Node, path: &KeyPath) -> &'a Origin {
    &tree.lookup(path).0.origin
}

/// Kernel parameters as `--cmdline-append` takes them.
fn check_params(text: &str) -> Result<(), String> {
    split_params(text)?.iter().try_for_each(|p| check_param(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search() -> SearchPath {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        SearchPath::new(vec![repo.join("profiles")], Vec::new())
    }

    fn profile() -> Profile {
        super::super::load("base", &search(), &[]).unwrap()
    }

    fn load_for(profile: &Profile, text: &str) -> Result<HostsFile, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.yaml");
        std::fs::write(&path, text).unwrap();
        HostsFile::load(&path, profile, &search()).map_err(|e| {
            e.to_string()
                .replace(&format!("{}/", dir.path().display()), "")
        })
    }

    fn load(text: &str) -> Result<HostsFile, String> {
        load_for(&profile(), text)
    }

    #[test]
    fn a_profile_that_bakes_the_hostname_into_the_os_cannot_share_its_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("named.yaml");
        let motd = "files: [{path: /etc/motd, content: \"This is {{ hostname }}.\"}]";
        std::fs::write(&path, format!("inherits: [base]\n{motd}\n")).unwrap();
        let named = super::super::load(path.to_str().unwrap(), &search(), &[]).unwrap();
        let err = load_for(&named, "hosts:\n  - name: node-1\n").unwrap_err();
        assert!(
            err.starts_with("hosts.yaml:2: hosts[0].name: host node-1: variable 'hostname' is used in the OS configuration (files[2].content), but --hosts"),
            "{err}"
        );
    }

    #[test]
    fn hosts_get_their_name_as_hostname_and_their_vars() {
        let file = load(
            "hosts:\n  - name: node-1\n    vars: {ipv4_address: 10.0.0.11/24}\n    ssh_authorized_keys: [\"ssh-ed25519 AAAAC3Nz ops\"]\n  - name: node-2\n",
        )
        .unwrap();
        let names: Vec<&str> = file.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["node-1", "node-2"]);
        let one = &file.hosts[0];
        assert_eq!(one.vars["hostname"], "node-1");
        assert_eq!(one.vars["ipv4_address"], "10.0.0.11/24");
        assert_eq!(
            one.vars["ssh_authorized_keys"][0],
            "ssh-ed25519 AAAAC3Nz ops"
        );
        let rendered = one
            .render(&profile(), Some("quiet"), &HostFiles::default())
            .unwrap();
        assert_eq!(rendered.hostname, "node-1");
        let net = rendered.nocloud.unwrap().network_config.unwrap();
        assert!(net.contains("10.0.0.11/24"), "{net}");
    }

    #[test]
    fn mistakes_name_the_file_line_and_key() {
        let cases = [
            (
                "hosts:\n  - name: a\n    user-data: x\n",
                "hosts.yaml:3: hosts[0].user-data: unknown key (did you mean 'user_data'? expected one of name, vars, ssh_authorized_keys, cmdline_append, network_data, user_data)",
            ),
            (
                "hosts:\n  - name: a\n  - name: A\n",
                "hosts.yaml:3: hosts[1].name: host name 'A' is given twice (first at hosts[0], line 2); each host needs its own name",
            ),
            (
                "hosts:\n  - name: a\n    vars:\n      ipv4_adress: x\n",
                "hosts.yaml:4: hosts[0].vars.ipv4_adress: profile 'base' has no variable 'ipv4_adress'",
            ),
            (
                "hosts:\n  - name: a\n    vars: {hostname: b}\n",
                "hosts.yaml:3: hosts[0].vars.hostname: the host name is the host's 'name' (a)",
            ),
            (
                "hosts:\n  - name: a_b\n",
                "hosts.yaml:2: hosts[0].name: 'a_b' is not a valid host name",
            ),
            (
                "hosts: []\n",
                "hosts.yaml:1: hosts: expected at least one host",
            ),
            ("- name: a\n", "hosts.yaml:1: a hosts file is a map"),
            (
                "hosts:\n  - name: a\n    cmdline_append: 'a=\"b'\n",
                "hosts.yaml:3: hosts[0].cmdline_append: ",
            ),
            (
                "hosts:\n  - name: a\n    network_data: ../net.json\n",
                "hosts.yaml:3: hosts[0].network_data: '../net.json' is outside the hosts file's folder",
            ),
            (
                "hosts:\n  - name: a\n    user_data: missing\n",
                "hosts.yaml:3: hosts[0].user_data: missing: no such file or directory",
            ),
            (
                "hosts:\n  - name: a\n    vars: {uuid: x}\n",
                "hosts.yaml:3: hosts[0].vars.uuid: 'x' is not a UUID",
            ),
        ];
        for (text, expected) in cases {
            let err = load(text).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{text}\n{err}\nexpected {expected}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
