//! The disk layout of a qcow2 host: partitions, their sizes and where they go.
//!
//! The layout is a pure value, checked and planned here without touching a disk,
//! so the stage that writes disks gets offsets it does not need to re-derive.
//!
//! Partition numbers follow list order; placement on the disk follows list order
//! too, except that the one partition sized `rest` goes last, where it can take
//! the rest of the disk (and grow with it: growpart). This is how Airship's layout
//! has root as partition 1 — Ironic's config drive handling expects root first —
//! while it sits at the end of the disk after BIOS boot, ESP and /boot.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use super::schema::{AbsPath, FstabOptions};
use crate::util::size::parse_size;

/// Partitions start and end on 1 MiB boundaries, as parted and sgdisk align them.
pub const ALIGNMENT_BYTES: u64 = 1 << 20;
/// Room kept at the start (protective MBR, primary GPT) and the end (backup GPT).
pub const GPT_RESERVED_BYTES: u64 = ALIGNMENT_BYTES;
/// GPT holds 128 entries in its standard partition array.
pub const MAX_PARTITIONS: usize = 128;
/// GRUB's core.img for i386-pc must fit in the BIOS boot partition.
pub const MIN_BIOS_GRUB_BYTES: u64 = 1 << 20;

/// GPT partition type GUIDs.
pub const BIOS_GRUB_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
pub const ESP_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const LINUX_DATA_GUID: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
pub const LINUX_SWAP_GUID: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";
pub const XBOOTLDR_GUID: &str = "BC13C2FF-59E6-4262-A352-B275FD6F7172";

/// A byte count written as users write sizes (`8G`, `512M`, `4096`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ByteSize(pub u64);

impl TryFrom<String> for ByteSize {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bytes = parse_size(&text)?;
        if bytes == 0 {
            return Err("a size of 0 is not a size".into());
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size: `512M`, `8G`, `1536K`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A partition's size: fixed, a share of the disk, or whatever the disk has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PartitionSize {
    Bytes(ByteSize),
    /// Percent of the disk's size (`20%`), rounded down to whole MiB.
    Percent(u8),
    Rest,
}

impl PartitionSize {
    /// The size in bytes on a disk of `disk_bytes`; `None` for `rest`.
    pub fn bytes_on(&self, disk_bytes: u64) -> Option<u64> {
        match self {
            PartitionSize::Bytes(b) => Some(b.0),
            PartitionSize::Percent(p) => {
                let share = (u128::from(disk_bytes) * u128::from(*p) / 100) as u64;
                Some((share / ALIGNMENT_BYTES).max(1) * ALIGNMENT_BYTES)
            }
            PartitionSize::Rest => None,
        }
    }
}

impl TryFrom<String> for PartitionSize {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text == "rest" {
            return Ok(PartitionSize::Rest);
        }
        if let Some(number) = text.strip_suffix('%') {
            return match number.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Ok(PartitionSize::Percent(p)),
                _ => Err(format!("'{text}' is not a percentage from 1% to 100%")),
            };
        }
        let size = ByteSize::try_from(text)
            .map_err(|e| format!("{e} (or N% of the disk, or 'rest' for the rest of the disk)"))?;
        if !size.0.is_multiple_of(ALIGNMENT_BYTES) {
            return Err(format!("{} is not a whole number of MiB", size.0));
        }
        Ok(PartitionSize::Bytes(size))
    }
}

impl Serialize for PartitionSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PartitionSize::Bytes(b) => b.serialize(s),
            PartitionSize::Percent(p) => s.collect_str(&format_args!("{p}%")),
            PartitionSize::Rest => s.serialize_str("rest"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionType {
    /// GRUB's i386-pc core image, unformatted.
    BiosGrub,
    /// EFI system partition (FAT).
    Esp,
    /// Linux filesystem data.
    Linux,
    Swap,
    /// Extended boot loader partition (a shared /boot).
    Xbootldr,
}

impl PartitionType {
    pub fn gpt_guid(self) -> &'static str {
        match self {
            PartitionType::BiosGrub => BIOS_GRUB_GUID,
            PartitionType::Esp => ESP_GUID,
            PartitionType::Linux => LINUX_DATA_GUID,
            PartitionType::Swap => LINUX_SWAP_GUID,
            PartitionType::Xbootldr => XBOOTLDR_GUID,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    Ext4,
    Vfat,
    Swap,
    /// Left unformatted (BIOS boot).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub name: String,
    pub size: PartitionSize,
    #[serde(rename = "type")]
    pub kind: PartitionType,
    pub filesystem: Filesystem,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<AbsPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstab_options: Option<FstabOptions>,
}

/// How qcow2 images of the disk store their clusters (`disk.compression`).
/// Airship compressed its qcow2 images by default (`qcow_compress: true`);
/// so does osforge, with zlib, which every qemu reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskCompression {
    None,
    #[default]
    Zlib,
    /// Smaller and faster to write; qemu 5.1 and later read it.
    Zstd,
}

/// A qcow2 host's disk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disk {
    pub size: ByteSize,
    pub partitions: Vec<Partition>,
    pub compression: DiskCompression,
    /// UEFI boots through the distribution's signed shim and GRUB
    /// (`disk.secure_boot`), so the image boots with Secure Boot on; the
    /// image needs shim-signed and grub-efi-amd64-signed.
    pub secure_boot: bool,
}

/// Where one partition lands on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedPartition {
    /// The GPT entry number, 1-based, in list order.
    pub number: usize,
    /// Index into [`Disk::partitions`].
    pub index: usize,
    pub start_bytes: u64,
    pub size_bytes: u64,
}

/// A problem with the layout: which partition (if one) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError {
    pub partition: Option<usize>,
    pub field: Option<&'static str>,
    pub message: String,
}

fn layout_error(
    partition: Option<usize>,
    field: Option<&'static str>,
    message: String,
) -> LayoutError {
    LayoutError {
        partition,
        field,
        message,
    }
}

impl Disk {
    /// Checks the partitions make sense together and fit on the disk.
    pub fn check(&self) -> Result<(), LayoutError> {
        let parts = &self.partitions;
        if parts.is_empty() {
            return Err(layout_error(None, None, "a disk needs partitions".into()));
        }
        if parts.len() > MAX_PARTITIONS {
            return Err(layout_error(
                None,
                None,
                format!("{} partitions, GPT holds {MAX_PARTITIONS}", parts.len()),
            ));
        }
        for (i, p) in parts.iter().enumerate() {
            check_partition(i, p, &parts[..i])?;
        }
        let count = |kind: PartitionType| parts.iter().filter(|p| p.kind == kind).count();
        for (kind, name) in [
            (PartitionType::Esp, "esp"),
            (PartitionType::BiosGrub, "bios_grub"),
        ] {
            if count(kind) > 1 {
                let second = parts.iter().rposition(|p| p.kind == kind);
                return Err(layout_error(
                    second,
                    Some("type"),
                    format!("a second {name} partition (at most one is allowed)"),
                ));
            }
        }
        let roots = parts
            .iter()
            .filter(|p| p.mount.as_deref() == Some("/"))
            .count();
        if roots != 1 {
            return Err(layout_error(
                None,
                None,
                format!("exactly one partition must be mounted at / ({roots} are)"),
            ));
        }
        if let Some(second) = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.size == PartitionSize::Rest)
            .map(|(i, _)| i)
            .nth(1)
        {
            return Err(layout_error(
                Some(second),
                Some("size"),
                "a second partition sized 'rest' (only one can take the rest)".into(),
            ));
        }
        self.layout().map(|_| ())
    }

    /// Places the partitions; fails if they do not fit.
    pub fn layout(&self) -> Result<Vec<PlacedPartition>, LayoutError> {
        let fixed: u64 = self
            .partitions
            .iter()
            .map(|p| p.size.bytes_on(self.size.0).unwrap_or(0))
            .sum();
        let usable = (self.size.0 / ALIGNMENT_BYTES * ALIGNMENT_BYTES)
            .saturating_sub(2 * GPT_RESERVED_BYTES);
        let has_rest = self
            .partitions
            .iter()
            .any(|p| p.size == PartitionSize::Rest);
        let needed = fixed + if has_rest { ALIGNMENT_BYTES } else { 0 };
        if needed > usable {
            return Err(layout_error(
                None,
                Some("size"),
                format!(
                    "the partitions need {} but a {} disk has {} usable",
                    ByteSize(needed),
                    self.size,
                    ByteSize(usable)
                ),
            ));
        }
        let order = self
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.size != PartitionSize::Rest)
            .chain(
                self.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.size == PartitionSize::Rest),
            );
        let mut start = GPT_RESERVED_BYTES;
        let mut placed: Vec<PlacedPartition> = order
            .map(|(index, p)| {
                let size_bytes = p
                    .size
                    .bytes_on(self.size.0)
                    .unwrap_or(GPT_RESERVED_BYTES + usable - start);
                let here = PlacedPartition {
                    number: index + 1,
                    index,
                    start_bytes: start,
                    size_bytes,
                };
                start += size_bytes;
                here
            })
            .collect();
        placed.sort_by_key(|p| p.number);
        Ok(placed)
    }
}

fn check_partition(i: usize, p: &Partition, before: &[Partition]) -> Result<(), LayoutError> {
    let err =
        |field: &'static str, message: String| Err(layout_error(Some(i), Some(field), message));
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 36
        && p.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return err(
            "name",
            format!(
                "'{}' is not a partition name (letters, digits, '-', '_'; at most 36)",
                p.name
            ),
        );
    }
    if before.iter().any(|b| b.name == p.name) {
        return err("name", format!("a second partition named '{}'", p.name));
    }
    let expected_fs = match p.kind {
        PartitionType::BiosGrub => Some(Filesystem::None),
        PartitionType::Esp => Some(Filesystem::Vfat),
        PartitionType::Swap => Some(Filesystem::Swap),
        PartitionType::Linux | PartitionType::Xbootldr => None,
    };
    if let Some(fs) = expected_fs
        && p.filesystem != fs
    {
        return err(
            "filesystem",
            format!(
                "a {} partition needs filesystem {}",
                p.kind.name(),
                fs_name(fs)
            ),
        );
    }
    if matches!(p.kind, PartitionType::Linux | PartitionType::Xbootldr)
        && matches!(p.filesystem, Filesystem::Swap | Filesystem::None)
    {
        return err(
            "filesystem",
            format!(
                "a {} partition needs a filesystem (ext4 or vfat)",
                p.kind.name()
            ),
        );
    }
    if p.kind == PartitionType::BiosGrub
        && matches!(p.size, PartitionSize::Bytes(b) if b.0 < MIN_BIOS_GRUB_BYTES)
    {
        return err("size", "a bios_grub partition needs at least 1M".into());
    }
    match (&p.mount, p.filesystem) {
        (Some(_), Filesystem::None | Filesystem::Swap) => {
            return err(
                "mount",
                format!("a {} partition is not mounted", fs_name(p.filesystem)),
            );
        }
        (Some(m), _) if before.iter().any(|b| b.mount.as_ref() == Some(m)) => {
            return err("mount", format!("a second partition mounted at {m}"));
        }
        (Some(m), fs) if m.as_str() == "/" && fs != Filesystem::Ext4 => {
            return err("filesystem", "the root partition must be ext4".into());
        }
        (None, _) if p.fstab_options.is_some() => {
            return err("fstab_options", "fstab_options need a mount point".into());
        }
        _ => {}
    }
    Ok(())
}

impl PartitionType {
    /// The name a profile writes (`bios_grub`, `esp`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PartitionType::BiosGrub => "bios_grub",
            PartitionType::Esp => "esp",
            PartitionType::Linux => "linux",
            PartitionType::Swap => "swap",
            PartitionType::Xbootldr => "xbootldr",
        }
    }
}

fn fs_name(fs: Filesystem) -> &'static str {
    match fs {
        Filesystem::Ext4 => "ext4",
        Filesystem::Vfat => "vfat",
        Filesystem::Swap => "swap",
        Filesystem::None => "none",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A partition from its profile fields (test layouts).
    pub(crate) fn part(
        name: &str,
        size: &str,
        kind: PartitionType,
        fs: Filesystem,
        mount: Option<&str>,
    ) -> Partition {
        Partition {
            name: name.into(),
            size: PartitionSize::try_from(size.to_string()).unwrap(),
            kind,
            filesystem: fs,
            mount: mount.map(|m| AbsPath::try_from(m.to_string()).unwrap()),
            fstab_options: None,
        }
    }

    /// The default layout of qcow2-host (Airship's).
    pub(crate) fn airship() -> Disk {
        use {Filesystem as F, PartitionType as T};
        Disk {
            size: ByteSize(8 << 30),
            compression: DiskCompression::Zlib,
            secure_boot: false,
            partitions: vec![
                part("root", "rest", T::Linux, F::Ext4, Some("/")),
                part("bios", "4M", T::BiosGrub, F::None, None),
                part("esp", "512M", T::Esp, F::Vfat, Some("/boot/efi")),
                part("boot", "768M", T::Linux, F::Ext4, Some("/boot")),
            ],
        }
    }

    #[test]
    fn root_is_partition_one_but_is_placed_last_to_take_the_rest() {
        let disk = airship();
        disk.check().unwrap();
        let placed = disk.layout().unwrap();
        const MIB: u64 = 1 << 20;
        assert_eq!(placed[0].number, 1);
        assert_eq!(placed[0].start_bytes, (1 + 4 + 512 + 768) * MIB);
        assert_eq!(
            placed[0].start_bytes + placed[0].size_bytes,
            (8 << 30) - MIB
        );
        assert_eq!(
            (placed[1].start_bytes, placed[1].size_bytes),
            (MIB, 4 * MIB)
        );
        assert_eq!(placed[2].start_bytes, 5 * MIB);
        assert_eq!(placed[3].start_bytes, 517 * MIB);
    }

    #[test]
    fn a_percentage_is_a_share_of_the_disk_and_too_much_does_not_fit() {
        use {Filesystem as F, PartitionType as T};
        let mut disk = airship();
        disk.partitions
            .push(part("var", "25%", T::Linux, F::Ext4, Some("/var")));
        disk.check().unwrap();
        let placed = disk.layout().unwrap();
        assert_eq!(placed[4].size_bytes, 2048 << 20);
        assert_eq!(placed[4].start_bytes, (1 + 4 + 512 + 768) << 20);
        disk.partitions[4].size = PartitionSize::Percent(100);
        assert!(disk.check().is_err());
    }

    #[test]
    fn broken_layouts_say_which_partition_and_why() {
        use {Filesystem as F, PartitionType as T};
        let mut d = airship();
        d.partitions[0].mount = None;
        assert!(
            d.check()
                .unwrap_err()
                .message
                .contains("exactly one partition must be mounted at /")
        );

        let mut d = airship();
        d.partitions
            .push(part("esp2", "64M", T::Esp, F::Vfat, None));
        let e = d.check().unwrap_err();
        assert_eq!((e.partition, e.field), (Some(4), Some("type")));

        let mut d = airship();
        d.partitions
            .push(part("data", "rest", T::Linux, F::Ext4, Some("/data")));
        assert_eq!(d.check().unwrap_err().partition, Some(4));

        let mut d = airship();
        d.partitions[2].filesystem = F::Ext4;
        assert!(
            d.check()
                .unwrap_err()
                .message
                .contains("needs filesystem vfat")
        );

        let mut d = airship();
        d.size = ByteSize(1 << 30);
        assert!(d.check().unwrap_err().message.contains("usable"));
    }

    #[test]
    fn sizes_parse_and_print_in_binary_units() {
        assert_eq!(
            ByteSize::try_from("8G".to_string()).unwrap().to_string(),
            "8G"
        );
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536K");
        assert!(PartitionSize::try_from("1500K".to_string()).is_err());
        assert_eq!(
            PartitionSize::try_from("20%".to_string()),
            Ok(PartitionSize::Percent(20))
        );
        assert!(PartitionSize::try_from("0%".to_string()).is_err());
        assert!(PartitionSize::try_from("101%".to_string()).is_err());
        // 20% of 10 GiB is 2048 MiB; of 10 GB, rounded down to whole MiB.
        assert_eq!(
            PartitionSize::Percent(20).bytes_on(10 << 30),
            Some(2048 << 20)
        );
        assert_eq!(
            PartitionSize::Percent(20).bytes_on(10_000_000_000),
            Some(1907 << 20)
        );
        assert!(
            PartitionSize::try_from("lots".to_string())
                .unwrap_err()
                .contains("rest")
        );
    }
}
