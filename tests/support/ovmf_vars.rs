//! An OVMF variables store with the test's own Secure Boot key enrolled:
//! OVMF's empty template (setup mode) with PK, KEK and db holding one
//! certificate, as signature lists made by efitools' cert-to-efi-sig-list,
//! and SecureBootEnable set. OVMF trusts what its flash holds, so writing
//! the variables into a copy of the template is enrolling them (what
//! virt-fw-vars does).
//!
//! Layout (edk2's VariableFormat.h, authenticated variables):
//! ```text
//!  firmware volume header, then the variable store header:
//!    signature gEfiAuthenticatedVariableGuid, size u32, format 0x5a, state 0xfe
//!  variables, each 4-byte aligned, until 0xff:
//!    start 0x55aa u16, state 0x3f u8, reserved, attributes u32,
//!    monotonic count u64, timestamp (EFI_TIME, 16), public key index u32,
//!    name size u32, data size u32, vendor GUID, name (UTF-16, NUL), data
//! ```
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// OVMF's empty variables (no keys: setup mode).
pub const EMPTY_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

const AUTH_VARIABLE_STORE: &str = "aaf32c78-947b-439a-a180-2e144ec37792";
const GLOBAL_VARIABLE: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
const IMAGE_SECURITY_DATABASE: &str = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";
const SECURE_BOOT_ENABLE: &str = "f0a30bc7-af08-4556-99c4-001009c93a44";
const CUSTOM_MODE: &str = "c076ec0c-7028-4399-a072-71ee5c448b9f";
/// The signature lists' owner.
pub const OWNER: &str = "0e5e5a2f-9c4b-4a8d-9a4e-6f736f726765";

const NON_VOLATILE: u32 = 0x1;
const BOOT_SERVICE: u32 = 0x2;
const RUNTIME: u32 = 0x4;
const TIME_BASED_AUTHENTICATED: u32 = 0x20;

/// A GUID in EFI's byte order (the first three fields little-endian).
pub fn guid(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

fn variable(name: &str, vendor: &str, attributes: u32, data: &[u8]) -> Vec<u8> {
    let name: Vec<u8> = name
        .encode_utf16()
        .chain([0])
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut v = Vec::new();
    v.extend_from_slice(&0x55aau16.to_le_bytes());
    v.push(0x3f); // VAR_ADDED
    v.push(0);
    v.extend_from_slice(&attributes.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&[0u8; 16]);
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&(name.len() as u32).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&guid(vendor));
    v.extend_from_slice(&name);
    v.extend_from_slice(data);
    v
}

/// An EFI signature list holding `cert_pem` (X.509), made by efitools.
pub fn signature_list(cert_pem: &Path, work: &Path) -> Vec<u8> {
    let out = work.join("cert.esl");
    let status = Command::new("cert-to-efi-sig-list")
        .arg("-g")
        .arg(OWNER)
        .arg(cert_pem)
        .arg(&out)
        .status()
        .expect("cert-to-efi-sig-list (efitools) runs");
    assert!(status.success(), "cert-to-efi-sig-list failed");
    std::fs::read(&out).unwrap()
}

/// Writes `out`: [`EMPTY_VARS`] with `esl` as PK, KEK and db, Secure Boot on.
pub fn enroll(esl: &[u8], out: &Path) {
    let mut store = std::fs::read(EMPTY_VARS).expect("OVMF's variables template (ovmf)");
    let signature = guid(AUTH_VARIABLE_STORE);
    let header = store
        .windows(16)
        .position(|w| w == signature)
        .expect("an authenticated variable store");
    assert_eq!(store[header + 20], 0x5a, "store formatted");
    assert_eq!(store[header + 21], 0xfe, "store healthy");
    let size = u32::from_le_bytes(store[header + 16..header + 20].try_into().unwrap()) as usize;
    let mut at = header + 28;
    // Past any variables the template already has.
    while store[at..at + 2] == [0xaa, 0x55] {
        let name = u32::from_le_bytes(store[at + 36..at + 40].try_into().unwrap()) as usize;
        let data = u32::from_le_bytes(store[at + 40..at + 44].try_into().unwrap()) as usize;
        at = (at + 60 + name + data).next_multiple_of(4);
    }
    let authenticated = NON_VOLATILE | BOOT_SERVICE | RUNTIME | TIME_BASED_AUTHENTICATED;
    let variables = [
        variable("db", IMAGE_SECURITY_DATABASE, authenticated, esl),
        variable("KEK", GLOBAL_VARIABLE, authenticated, esl),
        variable("PK", GLOBAL_VARIABLE, authenticated, esl),
        variable(
            "SecureBootEnable",
            SECURE_BOOT_ENABLE,
            NON_VOLATILE | BOOT_SERVICE,
            &[1],
        ),
        variable("CustomMode", CUSTOM_MODE, NON_VOLATILE | BOOT_SERVICE, &[0]),
    ];
    for v in variables {
        assert!(at + v.len() <= header + size, "the variable store is full");
        assert!(store[at..at + v.len()].iter().all(|&b| b == 0xff));
        store[at..at + v.len()].copy_from_slice(&v);
        at = (at + v.len()).next_multiple_of(4);
    }
    std::fs::write(out, store).unwrap();
}
