//! Per-host output: the kernel command line and the cloud-init seed, rendered
//! with tera from the profile's variables.
//!
//! tera 1.20 rather than 2.x: 1.x is long stable, its Jinja2 syntax is what
//! Airship's users already write, and its error kinds are public so an undefined
//! variable can be reported as one. Templates are rendered without HTML escaping;
//! values that go into YAML or JSON should use `| json_encode()` (a JSON string is
//! also a valid YAML scalar). `get_env` is disabled: a host's seed must depend on
//! the profile and `--var` only, never on the build machine's environment.
//!
//! Every rendered file is parsed again (YAML with serde-saphyr, JSON with
//! serde_json) and checked for the shape cloud-init expects, so a template that
//! renders broken YAML fails here, naming the template, not on the booted host.

use std::error::Error as _;
use std::path::{Path, PathBuf};

use crate::netconfig::{HostNetwork, NetError};

use super::cmdline::{KernelCmdline, check_param};
use super::error::{KeyPath, ProfileError, SourceLocation, one_line};
use super::model::{Profile, Template};
use super::node::yaml_top_kind;
use super::schema::Datasource;

/// Everything one host gets from its profile.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HostRender {
    /// The per-host name: the `hostname` variable, else the profile's hostname.
    pub hostname: String,
    /// cloud-init's instance id: the `instance_id` variable, else
    /// `<profile>-<hostname>`, stable across rebuilds.
    pub instance_id: String,
    /// The `uuid` variable, else a UUID derived from profile and host name.
    pub uuid: String,
    pub kernel_cmdline: KernelCmdline,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nocloud: Option<NoCloudSeed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configdrive: Option<ConfigDrive>,
}

/// A NoCloud seed: the files of a `cidata` volume or a `ds=nocloud;s=...` source.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NoCloudSeed {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: Option<String>,
}

/// An OpenStack config drive (`config-2`), as Airship's ephemeral ISO carries it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfigDrive {
    pub user_data: String,
    pub meta_data_json: String,
    pub network_data_json: Option<String>,
}

impl HostRender {
    /// Appends parameters (`--cmdline-append "quiet nomodeset"`), each checked.
    pub fn append_cmdline(&mut self, args: &str) -> Result<(), ProfileError> {
        self.kernel_cmdline
            .append(args)
            .map_err(|message| ProfileError::InvalidArgument {
                flag: "--cmdline-append".into(),
                message,
            })
    }

    /// Uses a site's network file: as written when it is already in the
    /// datasource's format, converted otherwise.
    pub fn use_network(&mut self, network: &HostNetwork) -> Result<(), NetError> {
        if let Some(seed) = &mut self.nocloud {
            seed.network_config = Some(network.network_config()?);
        }
        if let Some(drive) = &mut self.configdrive {
            drive.network_data_json = Some(network.network_data_json()?);
        }
        Ok(())
    }

    /// The seed files with their paths on the seed volume.
    pub fn seed_files(&self) -> Vec<(&'static str, &str)> {
        let mut files = Vec::new();
        if let Some(seed) = &self.nocloud {
            files.push(("user-data", seed.user_data.as_str()));
            files.push(("meta-data", seed.meta_data.as_str()));
            if let Some(net) = &seed.network_config {
                files.push(("network-config", net.as_str()));
            }
        }
        if let Some(drive) = &self.configdrive {
            files.push(("openstack/latest/user_data", drive.user_data.as_str()));
            files.push((
                "openstack/latest/meta_data.json",
                drive.meta_data_json.as_str(),
            ));
            if let Some(net) = &drive.network_data_json {
                files.push(("openstack/latest/network_data.json", net.as_str()));
            }
        }
        files
    }
}

/// Checks a site's user-data file the way `--user-data` is checked: a
/// cloud-init header, and YAML that is a map after `#cloud-config`.
pub fn check_user_data(text: &str) -> Result<(), String> {
    check_shape(text, Shape::UserData).map_err(|m| m.replace("rendered ", ""))
}

/// What a rendered file must look like for cloud-init to read it.
#[derive(Debug, Clone, Copy)]
enum Shape {
    UserData,
    YamlMap,
    NetworkConfig,
    JsonObject,
}

/// What a site gives one host beside its variables: its own network
/// configuration and user-data files, used instead of the profile's templates.
#[derive(Debug, Clone, Default)]
pub struct HostFiles {
    /// `network_data.json` or netplan v2, turned into what the datasource reads.
    pub network: Option<HostNetwork>,
    /// A user-data file as written (`#cloud-config`, a script, multipart).
    pub user_data: Option<(PathBuf, String)>,
}

impl HostFiles {
    /// Reads `--network-data` and `--user-data` files; errors name the flag and file.
    pub fn load(
        network: Option<&Path>,
        user_data: Option<&Path>,
    ) -> Result<HostFiles, ProfileError> {
        let invalid = |flag: &str, message: String| ProfileError::InvalidArgument {
            flag: flag.into(),
            message,
        };
        let network = network
            .map(HostNetwork::load)
            .transpose()
            .map_err(|e| invalid("--network-data", e.to_string()))?;
        let user_data = user_data
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|text| (path.to_path_buf(), text))
                    .map_err(|e| invalid("--user-data", format!("{}: {e}", path.display())))
            })
            .transpose()?;
        Ok(HostFiles { network, user_data })
    }
}

impl Profile {
    /// [`Profile::render_host`], then `--cmdline-append`'s parameters after the
    /// profile's, checked like them: what every command that takes a profile
    /// and that option does.
    pub fn render_host_appending(
        &self,
        cmdline_append: Option<&str>,
    ) -> Result<HostRender, ProfileError> {
        self.render_host_with(cmdline_append, &HostFiles::default())
    }

    /// [`Profile::render_host_appending`] with a host's own files in place of
    /// the profile's network and user-data templates.
    pub fn render_host_with(
        &self,
        cmdline_append: Option<&str>,
        files: &HostFiles,
    ) -> Result<HostRender, ProfileError> {
        let mut host = self.render_host()?;
        if let Some(extra) = cmdline_append {
            host.append_cmdline(extra)?;
        }
        if let Some(network) = &files.network {
            host.use_network(network)
                .map_err(|e| ProfileError::InvalidArgument {
                    flag: "--network-data".into(),
                    message: e.to_string(),
                })?;
        }
        if let Some((path, text)) = &files.user_data {
            check_shape(text, Shape::UserData).map_err(|m| ProfileError::InvalidArgument {
                flag: "--user-data".into(),
                message: format!("{}: {}", path.display(), m.replace("rendered ", "")),
            })?;
            if let Some(seed) = &mut host.nocloud {
                seed.user_data = text.clone();
            }
            if let Some(drive) = &mut host.configdrive {
                drive.user_data = text.clone();
            }
        }
        Ok(host)
    }

    /// Renders the kernel command line and the cloud-init seed for this profile's
    /// host. Fails with the template (or the profile line) at fault.
    pub fn render_host(&self) -> Result<HostRender, ProfileError> {
        let text_var = |name: &str| self.variables.get(name).and_then(|v| v.as_str());
        let hostname = text_var("hostname")
            .unwrap_or(self.os.hostname.as_str())
            .to_string();
        let instance_id = text_var("instance_id")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}-{hostname}", self.name));
        let uuid = text_var("uuid")
            .map(str::to_string)
            .unwrap_or_else(|| derived_uuid(&self.name, &hostname));

        let mut context = tera::Context::new();
        for (name, value) in &self.variables {
            context.insert(name.as_str(), value);
        }
        context.insert("profile", &self.name);
        context.insert("hostname", &hostname);
        context.insert("instance_id", &instance_id);
        context.insert("uuid", &uuid);

        let mut params = Vec::new();
        for param in &self.kernel.cmdline {
            let at = |m: String| {
                ProfileError::invalid(param.defined_at.clone(), param.key_path.clone(), m)
            };
            let rendered = render_source("kernel.cmdline", &param.template, &context)
                .map_err(|(_, message)| at(message))?;
            let rendered = rendered.trim();
            if rendered.is_empty() {
                continue;
            }
            check_param(rendered).map_err(at)?;
            params.push(rendered.to_string());
        }
        let kernel_cmdline = KernelCmdline::new(params).map_err(|m| {
            ProfileError::invalid(
                SourceLocation::file_only(&self.path),
                KeyPath::parse("kernel.cmdline"),
                m,
            )
        })?;

        let ci = &self.cloud_init;
        let user_data = render_file(&ci.user_data, &context, Shape::UserData)?;
        let (nocloud, configdrive) = match ci.datasource {
            Datasource::Nocloud => {
                let network_config = match &ci.network {
                    Some(t) => render_optional(t, &context, Shape::NetworkConfig)?,
                    None => None,
                };
                let seed = NoCloudSeed {
                    user_data,
                    meta_data: render_file(&ci.meta_data, &context, Shape::YamlMap)?,
                    network_config,
                };
                (Some(seed), None)
            }
            Datasource::Configdrive => {
                let network_data_json = match &ci.network {
                    Some(t) => render_optional(t, &context, Shape::JsonObject)?,
                    None => None,
                };
                let drive = ConfigDrive {
                    user_data,
                    meta_data_json: render_file(&ci.meta_data, &context, Shape::JsonObject)?,
                    network_data_json,
                };
                (None, Some(drive))
            }
        };
        Ok(HostRender {
            hostname,
            instance_id,
            uuid,
            kernel_cmdline,
            nocloud,
            configdrive,
        })
    }
}

/// A tera instance that never escapes and cannot read the environment.
fn new_tera() -> tera::Tera {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    tera.register_function(
        "get_env",
        |_: &std::collections::HashMap<String, tera::Value>| {
            Err(tera::Error::msg(
                "get_env is disabled: pass values with variables or --var",
            ))
        },
    );
    tera
}

/// Checks a template parses; the error is (line in the template, message).
pub(crate) fn check_template_syntax(source: &str) -> Result<(), (Option<u32>, String)> {
    new_tera()
        .add_raw_template("template", source)
        .map(|_| ())
        .map_err(|e| describe_tera_error(&e, source))
}

pub(crate) fn render_source(
    name: &str,
    source: &str,
    context: &tera::Context,
) -> Result<String, (Option<u32>, String)> {
    let mut tera = new_tera();
    tera.add_raw_template(name, source)
        .map_err(|e| describe_tera_error(&e, source))?;
    tera.render(name, context)
        .map_err(|e| describe_tera_error(&e, source))
}

fn render_template(t: &Template, context: &tera::Context) -> Result<String, ProfileError> {
    let name = t.path.display().to_string();
    render_source(&name, &t.source, context).map_err(|(line, message)| {
        ProfileError::RenderingTemplate {
            at: SourceLocation::new(t.path.clone(), line),
            message,
        }
    })
}

fn render_file(
    t: &Template,
    context: &tera::Context,
    shape: Shape,
) -> Result<String, ProfileError> {
    let text = render_template(t, context)?;
    check_shape(&text, shape).map_err(|message| ProfileError::InvalidRenderedFile {
        template: t.path.clone(),
        message,
    })?;
    Ok(text)
}

/// Optional files (network configuration) that render to nothing are left out.
fn render_optional(
    t: &Template,
    context: &tera::Context,
    shape: Shape,
) -> Result<Option<String>, ProfileError> {
    let text = render_template(t, context)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    render_file(t, context, shape).map(Some)
}

/// user-data headers cloud-init understands; only `#cloud-config` is YAML.
const USER_DATA_HEADERS: [&str; 6] = [
    "#cloud-config",
    "#!",
    "#include",
    "#cloud-boothook",
    "## template: jinja",
    "Content-Type: multipart/",
];

fn check_shape(text: &str, shape: Shape) -> Result<(), String> {
    let yaml_map = |text: &str, what: &str| match yaml_top_kind(text) {
        Ok(Some("a map")) | Ok(None) => Ok(()),
        Ok(Some(kind)) => Err(format!("rendered {what} is {kind}, not a map")),
        Err(e) => Err(format!("rendered {what} is not valid YAML: {e}")),
    };
    match shape {
        Shape::UserData => {
            let first = text.lines().next().unwrap_or("").trim_end();
            if first == "#cloud-config" {
                return yaml_map(text, "#cloud-config user-data");
            }
            if !USER_DATA_HEADERS.iter().any(|h| first.starts_with(h)) {
                return Err(format!(
                    "rendered user-data starts with '{first}', not a cloud-init header ({})",
                    USER_DATA_HEADERS.join(", ")
                ));
            }
            Ok(())
        }
        Shape::YamlMap => yaml_map(text, "meta-data"),
        Shape::NetworkConfig => {
            yaml_map(text, "network-config")?;
            if !text
                .lines()
                .any(|l| l.starts_with("version:") || l.starts_with("network:"))
            {
                return Err("rendered network-config has no top-level 'version' (1 or 2)".into());
            }
            Ok(())
        }
        Shape::JsonObject => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            Ok(_) => Err("rendered JSON is not an object".into()),
            Err(e) => Err(format!("rendered JSON is invalid: line {}: {e}", e.line())),
        },
    }
}

/// Turns tera's nested error into (template line, one-line message).
fn describe_tera_error(err: &tera::Error, source: &str) -> (Option<u32>, String) {
    let mut deepest = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        deepest = cause.to_string();
        next = cause.source();
    }
    // A pest parse error: " --> 3:8 | ... = expected an identifier".
    if let Some(pos) = deepest.find("--> ") {
        let line = deepest[pos + 4..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok());
        let expected = deepest
            .lines()
            .find_map(|l| l.trim().strip_prefix("= "))
            .unwrap_or("unexpected input");
        return (line, format!("syntax error: {expected}"));
    }
    if let Some(pos) = deepest.find("Variable `") {
        let rest = &deepest[pos + "Variable `".len()..];
        let name = rest.split('`').next().unwrap_or(rest);
        let root = name.split(['.', '[']).next().unwrap_or(name);
        return (
            find_line(source, root),
            format!("undefined variable '{name}'"),
        );
    }
    for (prefix, what) in [
        ("Filter '", "unknown filter"),
        ("Function '", "unknown function"),
        ("Test '", "unknown test"),
    ] {
        if let Some(rest) = deepest.strip_prefix(prefix)
            && let Some(name) = rest.strip_suffix("' not found")
        {
            return (find_line(source, name), format!("{what} '{name}'"));
        }
    }
    if let Some(name) = deepest
        .strip_prefix("Template '")
        .and_then(|r| r.strip_suffix("' not found"))
    {
        return (
            None,
            format!("template '{name}' not found (include, import and extends are not supported)"),
        );
    }
    (None, one_line(&deepest))
}

/// Whether a template uses the variable `name` inside a tag.
pub(crate) fn mentions_variable(source: &str, name: &str) -> bool {
    find_line(source, name).is_some()
}

/// tera does not say where a render error happened; the first line that uses the
/// name inside a tag is where the author will look.
fn find_line(source: &str, name: &str) -> Option<u32> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    source
        .lines()
        .position(|line| {
            line.match_indices(name).any(|(i, _)| {
                let before = line[..i].chars().next_back();
                let after = line[i + name.len()..].chars().next();
                !before.is_some_and(is_ident)
                    && !after.is_some_and(is_ident)
                    && (line[..i].contains("{{") || line[..i].contains("{%"))
            })
        })
        .map(|i| i as u32 + 1)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex.
pub(crate) fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A UUID that stays the same for the same profile and host (RFC 9562 version 8,
/// the layout for application-defined UUIDs, from xxh3-128).
pub fn derived_uuid(profile: &str, hostname: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_128(format!("osforge\0{profile}\0{hostname}").as_bytes());
    let mut bytes = hash.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_give_the_template_line() {
        let (line, message) = check_template_syntax("a\nb\n{{ x | }}\n").unwrap_err();
        assert_eq!(line, Some(3));
        assert!(message.starts_with("syntax error: expected"), "{message}");
    }

    #[test]
    fn undefined_variables_are_named_with_their_line() {
        let (line, message) = render_source(
            "t",
            "#cloud-config\nhostname: {{ hostname }}\nfqdn: {{ hostnme }}\n",
            &{
                let mut c = tera::Context::new();
                c.insert("hostname", "a");
                c
            },
        )
        .unwrap_err();
        assert_eq!(message, "undefined variable 'hostnme'");
        assert_eq!(line, Some(3));
    }

    #[test]
    fn the_environment_is_not_reachable_from_templates() {
        let (_, message) =
            render_source("t", "{{ get_env(name=\"HOME\") }}", &tera::Context::new()).unwrap_err();
        assert!(message.contains("get_env is disabled"), "{message}");
    }

    #[test]
    fn rendered_files_must_have_the_shape_cloud_init_reads() {
        assert!(check_shape("#cloud-config\nhostname: a\n", Shape::UserData).is_ok());
        assert!(check_shape("#!/bin/sh\necho hi\n", Shape::UserData).is_ok());
        assert!(check_shape("#cloud-config\nhostname: [a\n", Shape::UserData).is_err());
        assert!(check_shape("hostname: a\n", Shape::UserData).is_err());
        assert!(check_shape("version: 2\nethernets: {}\n", Shape::NetworkConfig).is_ok());
        assert!(check_shape("ethernets: {}\n", Shape::NetworkConfig).is_err());
        assert!(check_shape("{\"uuid\": \"x\"}", Shape::JsonObject).is_ok());
        assert!(check_shape("{\"uuid\": }", Shape::JsonObject).is_err());
        assert!(check_shape("[1]", Shape::JsonObject).is_err());
    }

    #[test]
    fn derived_uuids_are_stable_version_8_uuids() {
        let a = derived_uuid("ephemeral", "node-1");
        assert!(is_uuid(&a), "{a}");
        assert_eq!(a, derived_uuid("ephemeral", "node-1"));
        assert_ne!(a, derived_uuid("ephemeral", "node-2"));
        assert_eq!(&a[14..15], "8");
    }
}
