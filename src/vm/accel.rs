//! Choosing QEMU's accelerator.
//!
//! `auto` means TCG unless KVM is asked for by name. Why not probe KVM and
//! use it when the probe passes: a probe short enough to be worth running
//! (a VM that gets as far as SeaBIOS's boot menu, well under a second) says
//! nothing about the guests that matter. On the nested-virtualisation
//! machines osforge is built and tested on, `/dev/kvm` opens, answers
//! `KVM_GET_API_VERSION`, and SeaBIOS runs to "No bootable device" under KVM
//! (shown on its debug console), yet every real guest hangs right after the
//! boot loader, with or without `-cpu host`. The only probe that would catch
//! that is booting a kernel, which costs as much as the boot itself. A boot
//! that silently hangs until its timeout is far worse than one that is a few
//! times slower, so KVM is opt-in (`--accel kvm`), checked to be usable, and
//! `auto` reports why it did not take it.

use std::fmt;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use super::Error;

pub const KVM_DEVICE: &str = "/dev/kvm";
/// `_IO(KVMIO, 0x00)`: KVMIO is 0xAE.
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
/// The only API version Linux has ever reported (since 2.6.22).
const KVM_API_VERSION: libc::c_int = 12;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelRequest {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// What QEMU runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// QEMU's own binary translator: slower, works everywhere.
    Tcg,
}

/// The accelerator and, for the user, why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

impl AccelRequest {
    pub const NAMES: [&'static str; 3] = ["auto", "kvm", "tcg"];

    pub fn from_name(name: &str) -> Option<AccelRequest> {
        match name {
            "auto" => Some(AccelRequest::Auto),
            "kvm" => Some(AccelRequest::Kvm),
            "tcg" => Some(AccelRequest::Tcg),
            _ => None,
        }
    }
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Resolves a request; `--accel kvm` on a machine without usable KVM is an
/// error rather than a silent fallback.
pub fn choose(request: AccelRequest) -> Result<AccelChoice, Error> {
    choose_with(request, kvm_usable())
}

/// [`choose`] with the KVM check's result given, so the policy is testable.
pub fn choose_with(request: AccelRequest, kvm: Result<(), String>) -> Result<AccelChoice, Error> {
    let choice = |accel, reason: &str| AccelChoice {
        accel,
        reason: reason.to_string(),
    };
    Ok(match (request, kvm) {
        (AccelRequest::Tcg, _) => choice(Accel::Tcg, "asked for"),
        (AccelRequest::Kvm, Ok(())) => choice(Accel::Kvm, "asked for; /dev/kvm is usable"),
        (AccelRequest::Kvm, Err(reason)) => return Err(Error::KvmUnusable { reason }),
        (AccelRequest::Auto, Err(reason)) => AccelChoice {
            accel: Accel::Tcg,
            reason: format!("auto: KVM is not usable: {reason}"),
        },
        (AccelRequest::Auto, Ok(())) => choice(
            Accel::Tcg,
            "auto: /dev/kvm is usable, but KVM is only used with --accel kvm \
             because a short probe cannot tell whether guests will hang under it",
        ),
    })
}

/// Whether `/dev/kvm` opens read-write and speaks the KVM API: what QEMU
/// needs before it can even start a KVM guest.
pub fn kvm_usable() -> Result<(), String> {
    let device = OpenOptions::new()
        .read(true)
        .write(true)
        .open(KVM_DEVICE)
        .map_err(|e| format!("{KVM_DEVICE}: {e}"))?;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns a value.
    let version = unsafe { libc::ioctl(device.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    if version != KVM_API_VERSION {
        return Err(format!(
            "{KVM_DEVICE} reports API version {version}, not {KVM_API_VERSION}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_tcg_and_says_why_whether_or_not_kvm_is_usable() {
        let with_kvm = choose_with(AccelRequest::Auto, Ok(())).unwrap();
        assert_eq!(with_kvm.accel, Accel::Tcg);
        assert!(with_kvm.reason.contains("--accel kvm"), "{with_kvm:?}");
        let without = choose_with(AccelRequest::Auto, Err("/dev/kvm: gone".into())).unwrap();
        assert_eq!(without.accel, Accel::Tcg);
        assert!(without.reason.contains("/dev/kvm: gone"), "{without:?}");
    }

    #[test]
    fn kvm_by_name_is_used_when_usable_and_an_error_otherwise() {
        assert_eq!(
            choose_with(AccelRequest::Kvm, Ok(())).unwrap().accel,
            Accel::Kvm
        );
        let err = choose_with(AccelRequest::Kvm, Err("no such device".into())).unwrap_err();
        assert!(matches!(err, Error::KvmUnusable { .. }), "{err}");
    }

    #[test]
    fn tcg_by_name_is_tcg() {
        let c = choose_with(AccelRequest::Tcg, Ok(())).unwrap();
        assert_eq!(c.accel, Accel::Tcg);
    }
}
