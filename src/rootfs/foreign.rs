//! Building for another architecture than the build machine's (`arch:
//! arm64` on amd64): mmdebstrap, apt's maintainer scripts and osconfig run
//! the image's own programs, which the kernel hands to qemu-user through a
//! binfmt_misc handler. Without one, mmdebstrap stops minutes in with
//! "install arch-test"; this check says what is missing before any stage.

use std::path::Path;

const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The build machine's Debian architecture.
pub fn host_debian_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "powerpc64" => "ppc64el",
        "loongarch64" => "loong64",
        "mips64" => "mips64el",
        other => other,
    }
}

/// The qemu-user name of a Debian architecture (`qemu-aarch64`).
fn qemu_name(debian: &str) -> &str {
    match debian {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "armhf" | "armel" => "arm",
        "ppc64el" => "ppc64le",
        "loong64" => "loongarch64",
        other => other,
    }
}

/// Whether the machine runs `arch`'s programs itself (amd64 runs i386's).
fn runs_natively(arch: &str) -> bool {
    let host = host_debian_arch();
    arch == host || (host == "amd64" && arch == "i386")
}

/// `Err` with what to install when `arch` needs qemu-user and the machine
/// has no handler for it.
pub fn check_can_run(arch: &str) -> Result<(), String> {
    check_can_run_in(arch, Path::new(BINFMT_DIR))
}

fn check_can_run_in(arch: &str, binfmt: &Path) -> Result<(), String> {
    if runs_natively(arch) {
        return Ok(());
    }
    let qemu = format!("qemu-{}", qemu_name(arch));
    let handler = binfmt.join(&qemu);
    let enabled =
        std::fs::read_to_string(&handler).is_ok_and(|text| text.lines().next() == Some("enabled"));
    let arch_test = ["/usr/bin/arch-test", "/usr/sbin/arch-test"]
        .iter()
        .any(|p| Path::new(p).exists());
    if enabled && arch_test {
        return Ok(());
    }
    let missing = if enabled {
        "arch-test (which mmdebstrap uses to check the emulation) is not installed".to_string()
    } else {
        format!("no {qemu} handler is enabled in {}", binfmt.display())
    };
    Err(format!(
        "building for {arch} on this {} machine runs {arch} programs through qemu-user, but {missing}: apt-get install qemu-user-static binfmt-support arch-test (and, in a container, mount binfmt_misc on {BINFMT_DIR} and run update-binfmts --enable)",
        host_debian_arch()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_architecture_needs_no_handler_and_others_name_theirs() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(check_can_run_in(host_debian_arch(), empty.path()), Ok(()));
        let foreign = if host_debian_arch() == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let err = check_can_run_in(foreign, empty.path()).unwrap_err();
        assert!(
            err.contains(&format!("qemu-{}", qemu_name(foreign))),
            "{err}"
        );
        assert!(err.contains("apt-get install qemu-user-static"), "{err}");
        std::fs::write(
            empty.path().join(format!("qemu-{}", qemu_name(foreign))),
            "disabled\n",
        )
        .unwrap();
        assert!(check_can_run_in(foreign, empty.path()).is_err());
    }
}
