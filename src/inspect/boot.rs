//! What boots: the GRUB menu in a grub.cfg, the version a bzImage kernel
//! carries, and names for partition types.

use serde::Serialize;

use crate::formats::gpt::Guid;
use crate::profile::PartitionType;

/// The grub.cfg found, and its menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrubMenu {
    /// Where it was read, e.g. `partition 4 (boot): /grub/grub.cfg`.
    pub source: String,
    pub entries: Vec<MenuEntry>,
}

/// One `menuentry`: its title and what its `linux` and `initrd` lines load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MenuEntry {
    pub title: String,
    pub kernel: Option<String>,
    /// The kernel's command line as the kernel receives it (GRUB's quoting
    /// removed).
    pub cmdline: Option<String>,
    pub initrd: Vec<String>,
}

/// The menu entries of a grub.cfg. A small reading of GRUB's syntax:
/// `menuentry TITLE ... {` opens an entry (submenus are walked into),
/// `linux`/`linuxefi`/`linux16` and `initrd` lines inside it are split into
/// words the way GRUB's parser splits them, `}` closes it.
pub fn parse_grub_cfg(text: &str) -> Vec<MenuEntry> {
    let mut entries = Vec::new();
    let mut current: Option<MenuEntry> = None;
    for line in text.lines() {
        let words = split_words(line.trim());
        let Some(first) = words.first() else {
            continue;
        };
        match first.as_str() {
            "menuentry" => {
                if let Some(done) = current.take() {
                    entries.push(done);
                }
                current = Some(MenuEntry {
                    title: words.get(1).cloned().unwrap_or_default(),
                    kernel: None,
                    cmdline: None,
                    initrd: Vec::new(),
                });
            }
            "linux" | "linuxefi" | "linux16" => {
                if let Some(entry) = current.as_mut() {
                    entry.kernel = words.get(1).cloned();
                    entry.cmdline = Some(words[2.min(words.len())..].join(" "));
                }
            }
            "initrd" | "initrdefi" | "initrd16" => {
                if let Some(entry) = current.as_mut() {
                    entry.initrd = words[1..].to_vec();
                }
            }
            "}" => {
                if let Some(done) = current.take() {
                    entries.push(done);
                }
            }
            _ => {}
        }
    }
    entries.extend(current);
    entries
}

/// Splits a line into words as GRUB does: whitespace separates, `'...'`
/// quotes literally, `"..."` quotes with backslash escapes, `\` escapes
/// one character, `#` at the start of a word starts a comment. Variables
/// are left as written.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        q => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Linux boot protocol: the setup header's "HdrS" magic at 0x202, and the
/// `kernel_version` field at 0x20E, a pointer (minus 0x200) to a
/// NUL-terminated string in the setup code (boot protocol 2.00 and later).
const HDRS_AT: usize = 0x202;
const HDRS_MAGIC: &[u8; 4] = b"HdrS";
const KERNEL_VERSION_AT: usize = 0x20E;
const KERNEL_VERSION_BASE: usize = 0x200;
/// Enough of a bzImage to hold the setup header and the version string,
/// which sits in the setup sectors (at most 64 of them).
pub const KERNEL_HEAD_BYTES: usize = 64 * 512;

/// The version string of a bzImage from its first [`KERNEL_HEAD_BYTES`]
/// (e.g. `6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP ...`).
pub fn bzimage_version(head: &[u8]) -> Option<String> {
    if head.get(HDRS_AT..HDRS_AT + 4) != Some(&HDRS_MAGIC[..]) {
        return None;
    }
    let pointer = u16::from_le_bytes(
        head.get(KERNEL_VERSION_AT..KERNEL_VERSION_AT + 2)?
            .try_into()
            .ok()?,
    );
    if pointer == 0 {
        return None;
    }
    let start = usize::from(pointer) + KERNEL_VERSION_BASE;
    let rest = head.get(start..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    let text = String::from_utf8_lossy(&rest[..end]).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A name for a GPT partition type, as sgdisk and fdisk print them.
pub fn gpt_type_name(guid: Guid) -> Option<&'static str> {
    let ours = [
        (PartitionType::BiosGrub, "BIOS boot"),
        (PartitionType::Esp, "EFI System"),
        (PartitionType::Linux, "Linux filesystem"),
        (PartitionType::Swap, "Linux swap"),
        (PartitionType::Xbootldr, "Linux extended boot"),
    ];
    let others = [
        (
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "Linux root (x86-64)",
        ),
        ("933AC7E1-2EB4-4F13-B844-0E14E2AEF915", "Linux home"),
        ("E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM"),
        ("A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID"),
        (
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
            "Microsoft basic data",
        ),
    ];
    let text = guid.to_upper();
    ours.iter()
        .map(|(t, name)| (t.gpt_guid(), *name))
        .chain(others)
        .find(|(g, _)| *g == text)
        .map(|(_, name)| name)
}

/// A name for an MBR partition type byte.
pub fn mbr_type_name(code: u8) -> &'static str {
    match code {
        0x00 => "empty (ISO 9660 hybrid)",
        0x0b => "FAT32",
        0x0c => "FAT32 (LBA)",
        0x0e => "FAT16 (LBA)",
        0x17 => "hidden IFS",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0xee => "GPT protective",
        0xef => "EFI System",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_entries_give_titles_kernels_and_unquoted_command_lines() {
        let cfg = r#"set default=0
# menuentry "commented out" {
menuentry "Debian (node-1)" --class debian {
    linux /live/vmlinuz boot=live console=ttyS0,115200n8 'ds=nocloud;s=http://x/' quiet
    initrd /live/initrd.img
}
submenu 'Advanced' {
  menuentry 'rescue' {
    linux16 /vmlinuz-6.1.0-9-amd64 root=UUID=abc ro single
  }
}
"#;
        let entries = parse_grub_cfg(cfg);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].title, "Debian (node-1)");
        assert_eq!(entries[0].kernel.as_deref(), Some("/live/vmlinuz"));
        assert_eq!(
            entries[0].cmdline.as_deref(),
            Some("boot=live console=ttyS0,115200n8 ds=nocloud;s=http://x/ quiet")
        );
        assert_eq!(entries[0].initrd, ["/live/initrd.img"]);
        assert_eq!(entries[1].title, "rescue");
        assert_eq!(
            entries[1].cmdline.as_deref(),
            Some("root=UUID=abc ro single")
        );
    }

    #[test]
    fn the_bzimage_version_is_found_through_the_setup_header() {
        let mut head = vec![0u8; 4096];
        head[0x202..0x206].copy_from_slice(b"HdrS");
        head[0x20E..0x210].copy_from_slice(&0x0400u16.to_le_bytes());
        let version = b"6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        head[0x600..0x600 + version.len()].copy_from_slice(version);
        assert_eq!(
            bzimage_version(&head).as_deref(),
            Some("6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP")
        );
        head[0x202] = 0;
        assert_eq!(bzimage_version(&head), None, "no HdrS: not a bzImage");
    }

    #[test]
    fn osforge_partition_types_have_names() {
        let esp: Guid = PartitionType::Esp.gpt_guid().parse().unwrap();
        assert_eq!(gpt_type_name(esp), Some("EFI System"));
        assert_eq!(gpt_type_name(Guid([1; 16])), None);
    }
}
