//! The netboot set: what an HTTP server hands a machine that boots from the
//! network, for live-boot to run the same live system as the ISO.
//!
//! Flat files in the output directory, so that every file gets its
//! `.sha256`, `.md5sum`, `.manifest.json` and `.spdx.json` like any artifact:
//! ```text
//!  NAME.vmlinuz  NAME.initrd.img  NAME.squashfs   shared by every host (the ISO's)
//!  HOST.ipxe     HOST.grub.cfg                    per host: its kernel command line
//!  HOST.seed/{user-data,meta-data,vendor-data,network-config}
//!                                                 per host: cloud-init NoCloud over HTTP
//! ```
//! Every URL is absolute (`--netboot-url`): iPXE could resolve relative ones
//! against the script's own URL, but live-boot's `fetch=` and cloud-init's
//! `ds=nocloud-net;s=` are read by Linux, which has no such base.

use std::path::{Path, PathBuf};

use crate::profile::KernelCmdline;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--netboot-url {url}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("the netboot kernel command line: {0}")]
    Cmdline(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The HTTP folder the set is served from: `http://HOST[:PORT]/PATH/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// With the trailing slash.
    url: String,
    /// `HOST[:PORT]`, for GRUB's `(http,HOST[:PORT])` device.
    authority: String,
    /// `/PATH/` on that server.
    path: String,
}

impl BaseUrl {
    /// Plain HTTP only: busybox's wget in the initramfs has no TLS, and
    /// neither has GRUB 2.06's http module. Characters that iPXE, GRUB or
    /// the kernel's command-line splitting would read differently are refused.
    pub fn parse(url: &str) -> Result<BaseUrl, Error> {
        let bad = |reason| Error::BadUrl {
            url: crate::util::redact::url(url),
            reason,
        };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            bad("expected http://HOST[:PORT]/PATH/ (live-boot's wget and GRUB fetch over plain HTTP only)")
        })?;
        if let Some(c) = rest
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "\"'$;{}\\#?@".contains(*c))
        {
            return Err(bad(match c {
                '@' => "credentials do not belong in a URL every booting machine prints",
                '?' | '#' => {
                    "a query or fragment cannot be a folder the set's names are appended to"
                }
                _ => {
                    "contains a character iPXE, GRUB or the kernel command line would read differently"
                }
            }));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let path = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        Ok(BaseUrl {
            url: format!("http://{authority}{path}"),
            authority: authority.to_string(),
            path,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    fn join(&self, file: &str) -> String {
        format!("{}{file}", self.url)
    }
}

/// File names of the set.
pub fn kernel_file(name: &str) -> String {
    format!("{name}.vmlinuz")
}
pub fn initrd_file(name: &str) -> String {
    format!("{name}.initrd.img")
}
/// live-boot's `fetch=` only takes files ending in `.squashfs` (or .iso, .tar, .tgz).
pub fn squashfs_file(name: &str) -> String {
    format!("{name}.squashfs")
}
pub fn ipxe_file(host: &str) -> String {
    format!("{host}.ipxe")
}
pub fn grub_file(host: &str) -> String {
    format!("{host}.grub.cfg")
}
pub fn seed_dir(host: &str) -> String {
    format!("{host}.seed")
}

/// One host's view of the set.
pub struct HostSet<'a> {
    pub base: &'a BaseUrl,
    /// The shared files' name (`NAME.vmlinuz`, ...).
    pub shared: &'a str,
    /// The host's files' name (`HOST.ipxe`, ...).
    pub host: &'a str,
    pub profile: &'a str,
    pub hostname: &'a str,
    pub title: &'a str,
}

impl HostSet<'_> {
    /// The host's own command line plus what booting from the network
    /// needs: `boot=live` (unless the profile set it), live-boot's `fetch=`
    /// of the squashfs, and cloud-init's NoCloud seed URL. `ds=nocloud-net`
    /// rather than `ds=nocloud`: cloud-init 22.4 (bookworm) only fetches a
    /// `s=http://` seed in its network-mode datasource, which that selects;
    /// later versions still accept it.
    ///
    /// The host's network config travels on the command line too
    /// (`network-config=`, gzip and base64, which cloud-init reads before
    /// any datasource): 22.4 fetches only user-data and meta-data over HTTP,
    /// and a host with a static address has no network to fetch with
    /// until its config is applied.
    pub fn cmdline(
        &self,
        host_cmdline: &KernelCmdline,
        network_config: Option<&str>,
    ) -> Result<KernelCmdline, Error> {
        let mut cmdline = host_cmdline.clone();
        let mut add = |param: String| cmdline.append(&param).map_err(Error::Cmdline);
        if host_cmdline.get("boot").is_none() {
            add("boot=live".into())?;
        }
        add(format!(
            "fetch={}",
            self.base.join(&squashfs_file(self.shared))
        ))?;
        add(format!(
            "ds=nocloud-net;s={}/",
            self.base.join(&seed_dir(self.host))
        ))?;
        if let Some(config) = network_config {
            add(format!("network-config={}", gzip_base64(config)))?;
        }
        Ok(cmdline)
    }

    /// The iPXE script. The initrd gets a fixed name, and `initrd=` names it
    /// on the command line: under UEFI, iPXE hands the kernel's EFI stub
    /// the initrd by that name (BIOS kernels ignore the parameter).
    pub fn ipxe_script(&self, cmdline: &KernelCmdline) -> String {
        format!(
            "#!ipxe\n\
             # osforge netboot: profile {profile}, host {hostname}.\n\
             # The kernel fetches the live system (fetch=) and cloud-init its seed (s=) from {base}.\n\
             kernel --name vmlinuz {kernel} initrd=initrd.img {cmdline}\n\
             initrd --name initrd.img {initrd}\n\
             boot\n",
            profile = self.profile,
            hostname = self.hostname,
            base = self.base.as_str(),
            kernel = self.base.join(&kernel_file(self.shared)),
            initrd = self.base.join(&initrd_file(self.shared)),
        )
    }

    /// A GRUB config for GRUB booted from the network (HTTP boot or PXE):
    /// kernel and initrd from the same server, through GRUB's http module.
    pub fn grub_cfg(&self, cmdline: &KernelCmdline) -> String {
        let device = format!("(http,{})", self.base.authority);
        format!(
            "# grub.cfg for netbooting {hostname} (profile {profile}), rendered by osforge.\n\
             set default=0\n\
             set timeout=3\n\
             serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n\
             terminal_input serial console\n\
             terminal_output serial console\n\
             insmod http\n\
             \n\
             menuentry {title} {{\n\
             \x20   linux {device}{path}{kernel} {cmdline}\n\
             \x20   initrd {device}{path}{initrd}\n\
             }}\n",
            hostname = self.hostname,
            profile = self.profile,
            title = crate::boot::grub_cfg::quote_word(&format!("{} (netboot)", self.title)),
            path = self.base.path,
            kernel = kernel_file(self.shared),
            initrd = initrd_file(self.shared),
            cmdline = crate::boot::grub_cfg::quote_cmdline(&cmdline.to_string()),
        )
    }
}

/// iPXE expands `${name}` in every command, the kernel's arguments too, and
/// has no escape for it: a parameter holding `${` and a later `}` would
/// reach the kernel changed. `Err` names the parameter.
pub fn check_ipxe_literal(cmdline: &str) -> Result<(), String> {
    for param in cmdline.split_whitespace() {
        if let Some(at) = param.find("${")
            && param[at..].contains('}')
        {
            return Err(format!(
                "kernel parameter '{param}' holds '${{...}}', which iPXE expands as one of its settings and cannot escape"
            ));
        }
    }
    Ok(())
}

/// `text` gzipped and base64-encoded, as cloud-init decodes `network-config=`.
fn gzip_base64(text: &str) -> String {
    let mut compressor = libdeflater::Compressor::new(libdeflater::CompressionLvl::best());
    let mut out = vec![0; compressor.gzip_compress_bound(text.len())];
    let n = compressor
        .gzip_compress(text.as_bytes(), &mut out)
        .expect("the bound is large enough");
    out.truncate(n);
    crate::util::base64::encode(&out)
}

/// The NoCloud seed folder, `HOST.seed/` in `dir`. cloud-init fetches
/// `user-data`, `meta-data` and `vendor-data` (and, in later versions,
/// `network-config`) from it. `vendor-data` is there and empty: cloud-init
/// retries a missing one ten times, a second apart, before it goes on.
pub fn write_seed(
    dir: &Path,
    host: &str,
    user_data: &str,
    meta_data: &str,
    network_config: Option<&str>,
) -> Result<PathBuf, Error> {
    let seed = dir.join(seed_dir(host));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir(&seed).map_err(io(&seed))?;
    let files = [
        ("user-data", Some(user_data)),
        ("meta-data", Some(meta_data)),
        ("network-config", network_config),
        ("vendor-data", Some("")),
    ];
    for (name, content) in files {
        if let Some(content) = content {
            let path = seed.join(name);
            std::fs::write(&path, content).map_err(io(&path))?;
        }
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(base: &BaseUrl) -> HostSet<'_> {
        HostSet {
            base,
            shared: "base",
            host: "node-1",
            profile: "base",
            hostname: "node-1",
            title: "Debian (node-1)",
        }
    }

    #[test]
    fn base_urls_are_plain_http_folders() {
        let base = BaseUrl::parse("http://10.0.2.2:8080/boot").unwrap();
        assert_eq!(base.as_str(), "http://10.0.2.2:8080/boot/");
        assert_eq!(base.authority, "10.0.2.2:8080");
        assert_eq!(base.path, "/boot/");
        assert_eq!(
            BaseUrl::parse("http://server").unwrap().as_str(),
            "http://server/"
        );
        for bad in [
            "https://server/",
            "server/boot/",
            "http:///boot/",
            "http://user:pw@server/",
            "http://server/a b/",
            "http://server/${x}/",
            "http://server/?q=1",
        ] {
            let e = BaseUrl::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--netboot-url "), "{bad}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    #[test]
    fn the_command_line_fetches_the_squashfs_and_the_host_s_seed() {
        let base = BaseUrl::parse("http://10.0.2.2:8080/b/").unwrap();
        let host = KernelCmdline::new(vec!["console=ttyS0".into()]).unwrap();
        let line = set(&base).cmdline(&host, None).unwrap().to_string();
        assert_eq!(
            line,
            "console=ttyS0 boot=live fetch=http://10.0.2.2:8080/b/base.squashfs \
             ds=nocloud-net;s=http://10.0.2.2:8080/b/node-1.seed/"
        );
        let live = KernelCmdline::new(vec!["boot=live".into(), "quiet".into()]).unwrap();
        let line = set(&base).cmdline(&live, None).unwrap().to_string();
        assert_eq!(line.matches("boot=live").count(), 1, "{line}");
        // The network config, as cloud-init's cmdline reader decodes it.
        let yaml = "version: 2\nethernets:\n  primary:\n    dhcp4: true\n";
        let line = set(&base).cmdline(&live, Some(yaml)).unwrap();
        let payload = line.get("network-config").unwrap();
        let gz = crate::util::base64::decode(payload).unwrap();
        let mut plain = vec![0; yaml.len()];
        let n = libdeflater::Decompressor::new()
            .gzip_decompress(&gz, &mut plain)
            .unwrap();
        assert_eq!(&plain[..n], yaml.as_bytes());
    }

    #[test]
    fn ipxe_settings_syntax_in_a_parameter_is_refused() {
        assert_eq!(check_ipxe_literal("quiet a=$b c=${ d=$"), Ok(()));
        let err = check_ipxe_literal("quiet x=${net0/mac}").unwrap_err();
        assert!(err.contains("'x=${net0/mac}'"), "{err}");
    }

    #[test]
    fn the_ipxe_script_and_grub_config_boot_the_shared_kernel_with_the_host_s_line() {
        let base = BaseUrl::parse("http://srv:81/nb/").unwrap();
        let s = set(&base);
        let cmdline = s
            .cmdline(&KernelCmdline::new(vec!["quiet".into()]).unwrap(), None)
            .unwrap();
        let ipxe = s.ipxe_script(&cmdline);
        assert!(ipxe.starts_with("#!ipxe\n"), "{ipxe}");
        assert!(
            ipxe.contains(&format!(
                "\nkernel --name vmlinuz http://srv:81/nb/base.vmlinuz initrd=initrd.img {cmdline}\n"
            )),
            "{ipxe}"
        );
        assert!(
            ipxe.contains("\ninitrd --name initrd.img http://srv:81/nb/base.initrd.img\nboot\n"),
            "{ipxe}"
        );
        let grub = s.grub_cfg(&cmdline);
        assert!(
            grub.contains("linux (http,srv:81)/nb/base.vmlinuz quiet boot=live"),
            "{grub}"
        );
        // GRUB's parser would split the seed parameter at ';' unquoted.
        assert!(
            grub.contains("'ds=nocloud-net;s=http://srv:81/nb/node-1.seed/'"),
            "{grub}"
        );
        assert!(
            grub.contains("initrd (http,srv:81)/nb/base.initrd.img"),
            "{grub}"
        );
    }
}
