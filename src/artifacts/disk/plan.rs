//! The disk as a value: where each partition goes, its GUIDs and filesystem
//! UUIDs, which part of the tree it holds, and the fstab that mounts it.
//! Planned before anything is written, and testable without a disk.
//!
//! Identifiers are chosen here, not by the tools: fstab, grub.cfg and the
//! GRUB early config must name filesystems before they exist. They are
//! random, or, when the build is reproducible (`SOURCE_DATE_EPOCH`),
//! derived from a seed (profile and configured-rootfs key) and the
//! partition's name, so the same inputs give the same disk.

use sha2::{Digest, Sha256};

use crate::formats::gpt::{self, Guid};
use crate::profile::{Disk, Filesystem, PartitionType};

/// The ESP's fstab pass and every other non-root filesystem's: checked
/// after root, as Debian's installer writes them.
const FSCK_PASS_ROOT: u8 = 1;
const FSCK_PASS_OTHER: u8 = 2;
/// Longest FAT volume label.
const FAT_LABEL_BYTES: usize = 11;
/// Longest ext4 label.
const EXT4_LABEL_BYTES: usize = crate::formats::ext4::MAX_LABEL_BYTES;

/// Where identifiers come from.
#[derive(Debug, Clone)]
pub enum Ids {
    Random,
    /// Derived from this seed: equal seeds, equal identifiers.
    Derived(String),
}

impl Ids {
    /// The GUID for `purpose` (`disk`, `part:root`, `fs:root`...).
    pub fn guid(&self, purpose: &str) -> std::io::Result<Guid> {
        match self {
            Ids::Random => Guid::random(),
            Ids::Derived(seed) => {
                let digest = Sha256::digest(format!("osforge-disk\0{seed}\0{purpose}").as_bytes());
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                Ok(Guid::from_random_bytes(bytes))
            }
        }
    }
}

/// One partition, placed and named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPartition {
    /// The GPT entry number (1-based, profile order).
    pub number: u32,
    pub name: String,
    pub kind: PartitionType,
    pub filesystem: Filesystem,
    /// The mount point, for filesystems that are mounted.
    pub mount: Option<String>,
    pub fstab_options: Option<String>,
    pub start_bytes: u64,
    pub size_bytes: u64,
    pub type_guid: Guid,
    /// GPT's unique partition GUID (PARTUUID).
    pub part_guid: Guid,
    /// The filesystem's UUID (ext4, swap); for vfat its first four bytes are
    /// the volume serial.
    pub fs_uuid: Guid,
    /// ext4's directory hash seed.
    pub hash_seed: Guid,
}

impl PlannedPartition {
    pub fn first_lba(&self) -> u64 {
        self.start_bytes / gpt::SECTOR_BYTES
    }

    pub fn sectors(&self) -> u64 {
        self.size_bytes / gpt::SECTOR_BYTES
    }

    /// The FAT volume serial, printed by blkid as `XXXX-XXXX`.
    pub fn fat_serial(&self) -> u32 {
        u32::from_be_bytes([
            self.fs_uuid.0[0],
            self.fs_uuid.0[1],
            self.fs_uuid.0[2],
            self.fs_uuid.0[3],
        ])
    }

    /// The filesystem label: the partition name, cut to what the filesystem stores.
    pub fn label(&self) -> String {
        match self.filesystem {
            Filesystem::Vfat => self
                .name
                .to_ascii_uppercase()
                .chars()
                .take(FAT_LABEL_BYTES)
                .collect(),
            _ => self.name.chars().take(EXT4_LABEL_BYTES).collect(),
        }
    }

    /// How fstab names the filesystem: by UUID, as blkid reports it.
    pub fn fstab_source(&self) -> String {
        match self.filesystem {
            Filesystem::Vfat => {
                let s = self.fat_serial();
                format!("UUID={:04X}-{:04X}", s >> 16, s & 0xffff)
            }
            _ => format!("UUID={}", self.fs_uuid),
        }
    }

    fn gpt_attributes(&self) -> u64 {
        match self.kind {
            // Firmware and tools must leave GRUB's embedded core alone.
            PartitionType::BiosGrub => gpt::ATTR_REQUIRED_PARTITION,
            _ => 0,
        }
    }

    pub fn gpt_entry(&self) -> gpt::Entry {
        gpt::Entry {
            type_guid: self.type_guid,
            unique_guid: self.part_guid,
            first_lba: self.first_lba(),
            last_lba: self.first_lba() + self.sectors() - 1,
            attributes: self.gpt_attributes(),
            name: self.name.clone(),
        }
    }
}

/// The whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    pub size_bytes: u64,
    pub disk_guid: Guid,
    /// The MBR's disk signature.
    pub disk_signature: u32,
    /// In partition-number order.
    pub partitions: Vec<PlannedPartition>,
}

impl DiskPlan {
    /// Places `disk` (already checked by the profile loader) and names
    /// everything on it.
    pub fn new(disk: &Disk, ids: &Ids) -> anyhow::Result<DiskPlan> {
        let placed = disk
            .layout()
            .map_err(|e| anyhow::anyhow!("disk layout: {}", e.message))?;
        let mut partitions = Vec::with_capacity(placed.len());
        for p in placed {
            let spec = &disk.partitions[p.index];
            let name = &spec.name;
            partitions.push(PlannedPartition {
                number: p.number as u32,
                name: name.clone(),
                kind: spec.kind,
                filesystem: spec.filesystem,
                mount: spec.mount.as_ref().map(|m| m.to_string()),
                fstab_options: spec.fstab_options.as_ref().map(|o| o.to_string()),
                start_bytes: p.start_bytes,
                size_bytes: p.size_bytes,
                type_guid: spec.kind.gpt_guid().parse()?,
                part_guid: ids.guid(&format!("part:{name}"))?,
                fs_uuid: ids.guid(&format!("fs:{name}"))?,
                hash_seed: ids.guid(&format!("hash:{name}"))?,
            });
        }
        let disk_guid = ids.guid("disk")?;
        let signature = ids.guid("mbr")?;
        Ok(DiskPlan {
            size_bytes: disk.size.0 / gpt::SECTOR_BYTES * gpt::SECTOR_BYTES,
            disk_guid,
            disk_signature: u32::from_le_bytes([
                signature.0[0],
                signature.0[1],
                signature.0[2],
                signature.0[3],
            ]),
            partitions,
        })
    }

    pub fn root(&self) -> &PlannedPartition {
        self.mounted_at("/")
            .expect("the profile loader requires a root partition")
    }

    pub fn mounted_at(&self, mount: &str) -> Option<&PlannedPartition> {
        self.partitions
            .iter()
            .find(|p| p.mount.as_deref() == Some(mount))
    }

    pub fn of_kind(&self, kind: PartitionType) -> Option<&PlannedPartition> {
        self.partitions.iter().find(|p| p.kind == kind)
    }

    /// The mounted filesystems: the ones that hold part of the tree.
    pub fn mounted(&self) -> impl Iterator<Item = &PlannedPartition> {
        self.partitions.iter().filter(|p| p.mount.is_some())
    }

    /// The partition a path of the image lands on, and the path inside it:
    /// the deepest mount point that contains it. `/boot/grub/grub.cfg` with
    /// a /boot partition is `("boot", "grub/grub.cfg")`.
    pub fn owner_of<'a>(&self, image_path: &'a str) -> (&PlannedPartition, &'a str) {
        let path = image_path.trim_start_matches('/');
        let mut best = (self.root(), path);
        let mut best_depth = 0;
        for p in self.mounted() {
            let mount = p.mount.as_deref().unwrap_or("/").trim_matches('/');
            if mount.is_empty() {
                continue;
            }
            let inside = if path == mount {
                Some("")
            } else {
                path.strip_prefix(mount)
                    .and_then(|rest| rest.strip_prefix('/'))
            };
            let depth = mount.split('/').count();
            if let Some(rest) = inside
                && depth > best_depth
            {
                best = (p, rest);
                best_depth = depth;
            }
        }
        best
    }

    /// `/etc/fstab`: every mounted filesystem and swap area by UUID, in
    /// mount order (parents before the filesystems mounted inside them).
    pub fn fstab(&self, profile: &str) -> String {
        let mut out = format!(
            "# /etc/fstab, written by osforge from the disk layout of profile {profile}.\n\
             # <file system> <mount point> <type> <options> <dump> <pass>\n"
        );
        let mut mounted: Vec<&PlannedPartition> = self.mounted().collect();
        mounted.sort_by_key(|p| {
            p.mount
                .as_deref()
                .map(|m| m.trim_end_matches('/').matches('/').count())
                .unwrap_or(0)
        });
        mounted.sort_by_key(|p| p.mount.as_deref() != Some("/"));
        for p in mounted {
            let mount = p.mount.as_deref().unwrap_or("/");
            let (fstype, pass) = match p.filesystem {
                Filesystem::Vfat => ("vfat", FSCK_PASS_OTHER),
                _ if mount == "/" => ("ext4", FSCK_PASS_ROOT),
                _ => ("ext4", FSCK_PASS_OTHER),
            };
            let options = p.fstab_options.as_deref().unwrap_or("defaults");
            out.push_str(&format!(
                "{} {mount} {fstype} {options} 0 {pass}\n",
                p.fstab_source()
            ));
        }
        for p in self
            .partitions
            .iter()
            .filter(|p| p.filesystem == Filesystem::Swap)
        {
            out.push_str(&format!("{} none swap sw 0 0\n", p.fstab_source()));
        }
        out
    }

    /// The GPT: every partition, checked against the disk's bounds.
    pub fn partition_table(&self) -> Result<gpt::PartitionTable, gpt::Error> {
        let mut table = gpt::PartitionTable::new(self.size_bytes, self.disk_guid)?;
        for p in &self.partitions {
            table.add(p.number, p.gpt_entry())?;
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::disk_layouts;

    const MIB: u64 = 1 << 20;

    /// Airship's layout plus a swap partition.
    fn airship() -> Disk {
        use {Filesystem as F, PartitionType as T};
        let mut disk = disk_layouts::airship();
        disk.partitions
            .push(disk_layouts::part("swap", "64M", T::Swap, F::Swap, None));
        disk
    }

    #[test]
    fn paths_land_on_the_deepest_partition_that_contains_them() {
        let plan = DiskPlan::new(&airship(), &Ids::Derived("t".into())).unwrap();
        let at = |path| {
            let (p, rest) = plan.owner_of(path);
            (p.name.as_str(), rest)
        };
        assert_eq!(at("/etc/fstab"), ("root", "etc/fstab"));
        assert_eq!(at("/boot/grub/grub.cfg"), ("boot", "grub/grub.cfg"));
        assert_eq!(
            at("/boot/efi/EFI/BOOT/BOOTX64.EFI"),
            ("esp", "EFI/BOOT/BOOTX64.EFI")
        );
        assert_eq!(at("/boot"), ("boot", ""));
        assert_eq!(
            at("/bootstrap/x"),
            ("root", "bootstrap/x"),
            "a prefix that is not a path component"
        );
        assert_eq!(at("/"), ("root", ""));
    }

    #[test]
    fn fstab_mounts_root_first_then_nested_filesystems_by_uuid() {
        let plan = DiskPlan::new(&airship(), &Ids::Derived("t".into())).unwrap();
        let fstab = plan.fstab("qcow2-host");
        let lines: Vec<&str> = fstab.lines().filter(|l| !l.starts_with('#')).collect();
        let root = plan.root();
        assert_eq!(
            lines[0],
            format!("UUID={} / ext4 defaults 0 1", root.fs_uuid)
        );
        assert!(lines[1].contains(" /boot ext4 defaults 0 2"), "{fstab}");
        let esp = plan.mounted_at("/boot/efi").unwrap();
        let serial = esp.fat_serial();
        assert_eq!(
            lines[2],
            format!(
                "UUID={:04X}-{:04X} /boot/efi vfat defaults 0 2",
                serial >> 16,
                serial & 0xffff
            )
        );
        assert!(lines[3].ends_with(" none swap sw 0 0"));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn derived_ids_repeat_for_the_same_seed_and_differ_between_partitions() {
        let a = DiskPlan::new(&airship(), &Ids::Derived("seed".into())).unwrap();
        let b = DiskPlan::new(&airship(), &Ids::Derived("seed".into())).unwrap();
        let c = DiskPlan::new(&airship(), &Ids::Derived("other".into())).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.disk_guid, c.disk_guid);
        assert_ne!(a.partitions[0].fs_uuid, a.partitions[3].fs_uuid);
        let r = DiskPlan::new(&airship(), &Ids::Random).unwrap();
        assert_ne!(
            r.root().fs_uuid,
            DiskPlan::new(&airship(), &Ids::Random)
                .unwrap()
                .root()
                .fs_uuid
        );
    }

    #[test]
    fn root_is_entry_one_placed_last_and_the_table_accepts_the_layout() {
        let plan = DiskPlan::new(&airship(), &Ids::Random).unwrap();
        let root = plan.root();
        assert_eq!(root.number, 1);
        assert_eq!(root.start_bytes, (1 + 4 + 512 + 768 + 64) * MIB);
        assert_eq!(root.start_bytes + root.size_bytes, (8 << 30) - MIB);
        let bios = plan.of_kind(PartitionType::BiosGrub).unwrap();
        assert_eq!((bios.number, bios.first_lba()), (2, 2048));
        assert_eq!(bios.gpt_entry().attributes, gpt::ATTR_REQUIRED_PARTITION);
        plan.partition_table().unwrap();
        assert_eq!(plan.mounted_at("/boot/efi").unwrap().label(), "ESP");
    }
}
