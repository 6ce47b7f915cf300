//! Boot loaders signed with a site's own Secure Boot key: a unified kernel
//! image (UKI), the systemd stub with the kernel, initrd and command line
//! added as sections ([`crate::formats::pe::add_sections`]), signed with
//! `sbsign`. Firmware checks the one signature against its db and the stub
//! boots what is inside, so nothing unsigned is read before the kernel
//! runs (no grub.cfg, no separate initrd). The kernel inside is signed with
//! the same key too, for stubs that hand it to the firmware's LoadImage.
//!
//! The key is a secret: osforge passes its path to sbsign and never reads,
//! logs, caches or copies it; only the certificate's subject is shown.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::formats::pe;

/// Where systemd-boot-efi installs the stub.
pub const STUB_PATH: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// The site's db key and its certificate (PEM files), as `--signing-key`
/// and `--signing-cert` name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub key: PathBuf,
    pub cert: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the systemd stub is neither in the image nor on this machine at {STUB_PATH} (install systemd-boot-efi)"
    )]
    StubMissing,
    #[error("sbsign not found on PATH (install sbsigntool)")]
    SbsignMissing,
    #[error("sbsign could not sign {what} ({status}): {stderr}")]
    SbsignFailed {
        what: String,
        status: String,
        stderr: String,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("making the unified kernel image")]
    Pe(#[from] pe::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The stub to use: the image's own (its links resolved inside the
/// image), else this machine's.
pub fn find_stub(rootfs: &Path) -> Option<PathBuf> {
    let image = crate::osconfig::rootpath::resolve(rootfs, Path::new(STUB_PATH), true).ok();
    image
        .into_iter()
        .chain([PathBuf::from(STUB_PATH)])
        .find(|p| p.is_file())
}

/// Signs `input` into `output` with sbsign (which adds a signature to an
/// already signed image).
pub fn sign(key: &SigningKey, input: &Path, output: &Path) -> Result<(), Error> {
    let out = crate::util::process::output(
        Command::new("sbsign")
            .arg("--key")
            .arg(&key.key)
            .arg("--cert")
            .arg(&key.cert)
            .arg("--output")
            .arg(output)
            .arg(input),
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::SbsignMissing,
        _ => Error::Io {
            path: "sbsign".into(),
            source: e,
        },
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::SbsignFailed {
            what: input.display().to_string(),
            status: out.status.to_string(),
            stderr: stderr.trim().lines().next().unwrap_or("").to_string(),
        });
    }
    Ok(())
}

/// The unsigned UKI: `stub` with `.cmdline`, `.linux` and `.initrd`.
pub fn assemble(
    stub: &[u8],
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> Result<Vec<u8>, Error> {
    // The stub passes .cmdline to the kernel as it is; a NUL ends it.
    let mut cmdline = cmdline.as_bytes().to_vec();
    cmdline.push(0);
    Ok(pe::add_sections(
        stub,
        &[
            (".cmdline", &cmdline),
            (".linux", kernel),
            (".initrd", initrd),
        ],
    )?)
}

/// A signed UKI of `kernel`, `initrd` and `cmdline`, made in `work` (a
/// private scratch directory).
pub fn signed_uki(
    rootfs: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    key: &SigningKey,
    work: &Path,
) -> Result<Vec<u8>, Error> {
    let stub_path = find_stub(rootfs).ok_or(Error::StubMissing)?;
    let stub = std::fs::read(&stub_path).map_err(io(&stub_path))?;
    let signed_kernel = work.join("vmlinuz.signed");
    sign(key, kernel, &signed_kernel)?;
    let kernel = std::fs::read(&signed_kernel).map_err(io(&signed_kernel))?;
    let initrd = std::fs::read(initrd).map_err(io(initrd))?;
    let unsigned = work.join("uki.efi");
    std::fs::write(&unsigned, assemble(&stub, &kernel, &initrd, cmdline)?)
        .map_err(io(&unsigned))?;
    let signed = work.join("uki.efi.signed");
    sign(key, &unsigned, &signed)?;
    std::fs::read(&signed).map_err(io(&signed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_ends_with_a_nul_and_sections_come_in_order() {
        let stub = crate::formats::pe::tests::tiny_pe();
        let uki = assemble(&stub, b"KERNEL", b"INITRD", "boot=live quiet").unwrap();
        let layout = pe::parse(&uki).unwrap();
        let names: Vec<&str> = layout.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [".text", ".cmdline", ".linux", ".initrd"]);
        let cmdline = &layout.sections[1];
        let at = cmdline.raw_offset as usize;
        assert_eq!(
            &uki[at..at + cmdline.virtual_size as usize],
            b"boot=live quiet\0"
        );
    }
}
