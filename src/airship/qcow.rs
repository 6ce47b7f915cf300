//! `qcow-vars.yaml` (Airship's qcow role) → the profile's `disk:`.
//!
//! Airship gave parted absolute `part_start`/`part_end` for each partition,
//! numbered in list order; osforge takes sizes and places partitions one after
//! another from 1 MiB in list order, the one sized `rest` last. The import
//! turns ends minus starts into sizes, `'100%'` into `rest`, then plans the
//! osforge layout and compares each start with Airship's: where they differ
//! (a gap, or partitions listed out of disk order) the key is reported.
//!
//! parted reads `MiB`/`GiB` as binary and `MB`/`GB` as decimal units, and a
//! bare number as MB; `N%` is a share of the disk (`qcow_capacity`).

use super::emit::{Disk, Partition, Sourced, sourced};
use super::error::ImportError;
use super::vars::{Fields, VarsFile, invalid};
use crate::profile::Node;
use crate::profile::{self, AbsPath, ByteSize, FstabOptions, PartitionSize, PartitionType};

const NO_EQUIVALENT: &str = "osforge has no equivalent";
const MIB: u64 = 1 << 20;
/// qcow2-host's disk size, which an image without `qcow_capacity` inherits.
const INHERITED_DISK_BYTES: u64 = 8 << 30;

/// What the qcow vars say: the disk, and the image's file name if given.
#[derive(Debug, Default)]
pub(crate) struct QcowVars {
    pub disk: Disk,
    pub img_name: Option<(String, Node)>,
}

pub(crate) fn map(f: &VarsFile) -> Result<QcowVars, ImportError> {
    let mut out = QcowVars::default();
    let mut capacity_bytes = INHERITED_DISK_BYTES;
    if let Some(node) = f.root.get("qcow_capacity")
        && let Some(text) = f.text(node)?
    {
        let size = ByteSize::try_from(text.clone()).map_err(|e| invalid(node, e))?;
        capacity_bytes = size.0;
        out.disk.size = Some(sourced(size.to_string(), f.from(node)));
    }
    for entry in f.entries() {
        let node = &entry.value;
        match entry.key.as_str() {
            "qcow_capacity" => {}
            "qcow_compress" => {
                let compression = if f.bool(node)? { "zlib" } else { "none" };
                out.disk.compression = Some(sourced(compression, f.from(node)));
            }
            "img_name" => {
                if let Some(name) = f.text(node)? {
                    out.img_name = Some((name, node.clone()));
                }
            }
            "partitions" => partitions(f, node, capacity_bytes, &mut out.disk)?,
            "qcow_container_runtime_scripts" => f.unmapped(
                node,
                "osforge runs no scripts in the image; the configuration is declarative",
            ),
            _ => f.defer_unknown(node, NO_EQUIVALENT),
        }
    }
    Ok(out)
}

/// One Airship partition, read.
struct Read {
    node: Node,
    start_bytes: u64,
    /// `None`: to the end of the disk (`'100%'`).
    end_bytes: Option<u64>,
}

fn partitions(
    f: &VarsFile,
    node: &Node,
    capacity_bytes: u64,
    disk: &mut Disk,
) -> Result<(), ImportError> {
    let items = f.list(node)?;
    if items.is_empty() {
        // An empty table would silently leave the inherited layout in place.
        return Err(invalid(
            node,
            "an empty partition table (leave the key out for qcow2-host's layout)",
        ));
    }
    let mut read: Vec<Read> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for item in items {
        let fields = f.fields(
            item,
            &[
                "mount",
                "mount_order",
                "part_start",
                "part_end",
                "flags",
                "filesystem",
            ],
            NO_EQUIVALENT,
        )?;
        let mount = f.required_text(&fields, &["mount"])?.unwrap_or_default();
        let start = position(f, &fields, item, "part_start", capacity_bytes)?;
        let end = position(f, &fields, item, "part_end", capacity_bytes)?;
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        let start_bytes = start.unwrap_or(capacity_bytes);
        if let Some(end_bytes) = end
            && end_bytes <= start_bytes
        {
            return Err(invalid(
                fields.get("part_end").unwrap_or(item),
                "the partition ends before it starts",
            ));
        }
        let Some(p) = partition(f, &fields, item, &mount, start_bytes, end, &mut names)? else {
            continue;
        };
        disk.partitions.push(p);
        read.push(Read {
            node: item.clone(),
            start_bytes,
            end_bytes: end,
        });
    }
    mount_order(f, items)?;
    compare_placement(f, node, capacity_bytes, &read, disk)
}

/// A position in bytes: `Ok(Some(None))` is the end of the disk.
fn position(
    f: &VarsFile,
    fields: &Fields,
    item: &Node,
    key: &str,
    capacity_bytes: u64,
) -> Result<Option<Option<u64>>, ImportError> {
    let Some(node) = fields.get(key) else {
        return Err(invalid(item, format!("missing key {key}")));
    };
    let Some(text) = f.text(node)? else {
        return Ok(None);
    };
    let bytes = parted_position(&text, capacity_bytes).map_err(|e| invalid(node, e))?;
    if bytes.is_some_and(|b| b % MIB != 0) {
        return Err(invalid(
            node,
            format!("'{text}' is not on a 1 MiB boundary (osforge aligns partitions to 1 MiB)"),
        ));
    }
    Ok(Some(bytes))
}

/// parted's units: `1284MiB`, `32GiB`, `19G`, `500MB`, `'100%'`. `None`: 100%.
pub(crate) fn parted_position(text: &str, capacity_bytes: u64) -> Result<Option<u64>, String> {
    let t = text.trim();
    if let Some(pct) = t.strip_suffix('%') {
        let pct: u64 = pct
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| format!("'{text}' is not a percentage of the disk"))?;
        if pct == 100 {
            return Ok(None);
        }
        // Rounded down to the MiB, as parted's optimal alignment would place it.
        return Ok(Some(capacity_bytes * pct / 100 / MIB * MIB));
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let number: u64 = t[..digits_end].parse().map_err(|_| {
        format!(
            "'{text}' is not a position (a number with a unit such as MiB or GiB, or a percentage)"
        )
    })?;
    let unit: u64 = match t[digits_end..].trim() {
        "B" => 1,
        "s" => 512,
        "kB" | "KB" => 1000,
        "" | "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "TB" => 1000u64.pow(4),
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "'{text}' has an unknown unit '{other}' (expected MiB, GiB, MB, GB or %)"
            ));
        }
    };
    number
        .checked_mul(unit)
        .map(Some)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[allow(clippy::too_many_arguments)]
fn partition(
    f: &VarsFile,
    fields: &Fields,
    item: &Node,
    mount: &str,
    start_bytes: u64,
    end: Option<u64>,
    names: &mut Vec<String>,
) -> Result<Option<Sourced<Partition>>, ImportError> {
    let mut flags = Vec::new();
    if let Some(node) = fields.get("flags") {
        for flag in f.list(node)? {
            if let Some(text) = f.text(flag)? {
                match text.as_str() {
                    "bios_grub" | "esp" => flags.push(text),
                    // parted's boot flag on GPT is the ESP flag.
                    "boot" => flags.push("esp".into()),
                    other => f.unmapped(
                        flag,
                        format!("parted flag '{other}': osforge sets partition types, not flags"),
                    ),
                }
            }
        }
    }
    let fs_type = match fields.get("filesystem") {
        Some(node) => {
            let fs = f.fields(node, &["type", "fstab"], NO_EQUIVALENT)?;
            match fs.get("type") {
                Some(t) => f.text(t)?,
                None => None,
            }
        }
        None => None,
    };
    let kind = if flags.iter().any(|x| x == "bios_grub") {
        PartitionType::BiosGrub
    } else if flags.iter().any(|x| x == "esp") {
        PartitionType::Esp
    } else if matches!(fs_type.as_deref(), Some("swap" | "linux-swap")) {
        PartitionType::Swap
    } else {
        PartitionType::Linux
    };
    let filesystem = match (kind, fs_type.as_deref()) {
        (PartitionType::BiosGrub, _) => "none",
        (PartitionType::Swap, _) => "swap",
        (_, Some("vfat" | "fat32" | "fat16")) => "vfat",
        (_, Some("ext4")) => "ext4",
        (PartitionType::Esp, None) => "vfat",
        (_, Some(other)) => {
            let at = fields
                .get("filesystem")
                .and_then(|n| n.get("type"))
                .unwrap_or(item);
            f.unmapped(
                at,
                format!("filesystem {other}: osforge makes ext4, vfat or swap; written as ext4"),
            );
            "ext4"
        }
        (_, None) => {
            // A raw partition (for Ceph, say): osforge formats every data partition.
            f.unmapped(
                item,
                "a data partition without a filesystem: osforge formats data partitions; left out",
            );
            return Ok(None);
        }
    };
    let mounted =
        mount != "none" && !mount.is_empty() && filesystem != "none" && filesystem != "swap";
    let mount_path = if mounted {
        AbsPath::try_from(mount.to_string())
            .map_err(|e| invalid(fields.get("mount").unwrap_or(item), e))?;
        Some(mount.to_string())
    } else {
        None
    };
    let fstab_options = if mounted {
        fstab(f, fields, mount)?
    } else {
        None
    };
    let size = match end {
        Some(end_bytes) => ByteSize(end_bytes - start_bytes).to_string(),
        None => "rest".to_string(),
    };
    // Checked as the profile will check it, so a bad size is reported here, at its key.
    PartitionSize::try_from(size.clone()).map_err(|e| invalid(item, e))?;
    let name = unique_name(partition_name(kind, mount_path.as_deref()), names);
    Ok(Some(sourced(
        Partition {
            name,
            size,
            kind: kind.name(),
            filesystem,
            mount: mount_path,
            fstab_options,
        },
        f.from(item),
    )))
}

/// fstab options; dump and pass are compared with what osforge writes.
fn fstab(f: &VarsFile, fields: &Fields, mount: &str) -> Result<Option<String>, ImportError> {
    let Some(fs) = fields.get("filesystem") else {
        return Ok(None);
    };
    let Some(fstab) = fs.get("fstab") else {
        return Ok(None);
    };
    let tab = f.fields(fstab, &["options", "dump", "fsck"], NO_EQUIVALENT)?;
    let mut options = None;
    if let Some(node) = tab.get("options")
        && let Some(text) = f.text(node)?
    {
        FstabOptions::try_from(text.clone()).map_err(|e| invalid(node, e))?;
        options = Some(text);
    }
    let expected_pass = if mount == "/" { "1" } else { "2" };
    for (key, osforge) in [("dump", "0"), ("fsck", expected_pass)] {
        if let Some(node) = tab.get(key)
            && let Some(text) = f.text(node)?
            && text != osforge
        {
            f.unmapped(
                node,
                format!("{text}: osforge writes {osforge} for {mount}"),
            );
        }
    }
    Ok(options)
}

fn partition_name(kind: PartitionType, mount: Option<&str>) -> String {
    match (kind, mount) {
        (PartitionType::BiosGrub, _) => "bios".into(),
        (PartitionType::Esp, _) => "esp".into(),
        (PartitionType::Swap, _) => "swap".into(),
        (_, Some("/")) => "root".into(),
        (_, Some(m)) => m.trim_matches('/').replace('/', "-"),
        (_, None) => "data".into(),
    }
}

fn unique_name(base: String, names: &mut Vec<String>) -> String {
    let mut base: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    if base.is_empty() {
        base = "part".into();
    }
    let mut name = base.clone();
    let mut n = 2;
    while names.contains(&name) {
        name = format!("{base}{n}");
        n += 1;
    }
    names.push(name.clone());
    name
}

/// Airship mounted in `mount_order`; osforge mounts parents before children.
/// The order is kept when it puts every parent first (as Airship's does).
fn mount_order(f: &VarsFile, items: &[Node]) -> Result<(), ImportError> {
    let mut orders: Vec<(&Node, String, i64)> = Vec::new();
    for item in items {
        let (Some(m), Some(o)) = (item.get("mount"), item.get("mount_order")) else {
            continue;
        };
        let (Some(mount), Some(order)) = (super::vars::scalar_text(m), f.text(o)?) else {
            continue;
        };
        let order: i64 = order
            .parse()
            .map_err(|_| invalid(o, format!("'{order}' is not a number")))?;
        orders.push((o, mount, order));
    }
    for (node, mount, order) in &orders {
        let parent_later = orders.iter().any(|(_, other, other_order)| {
            other != mount
                && (other == "/" || mount.starts_with(&format!("{other}/")))
                && other_order > order
        });
        if parent_later && mount != "none" {
            f.unmapped(
                node,
                format!("{mount} is mounted before its parent; osforge mounts parents first"),
            );
        }
    }
    Ok(())
}

/// Plans the osforge layout and reports every partition whose start differs
/// from Airship's table.
fn compare_placement(
    f: &VarsFile,
    list: &Node,
    capacity_bytes: u64,
    read: &[Read],
    disk: &mut Disk,
) -> Result<(), ImportError> {
    if disk.partitions.is_empty() {
        return Ok(());
    }
    let planned: profile::Disk = {
        let yaml: Vec<serde_json::Value> = disk
            .partitions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.value.name, "size": p.value.size, "type": p.value.kind,
                    "filesystem": p.value.filesystem, "mount": p.value.mount,
                })
            })
            .collect();
        let partitions: Vec<profile::Partition> =
            serde_json::from_value(serde_json::Value::Array(yaml))
                .expect("partitions built from checked values");
        profile::Disk {
            size: ByteSize(capacity_bytes),
            partitions,
            compression: profile::DiskCompression::Zlib,
            secure_boot: false,
        }
    };
    if let Err(e) = planned.check() {
        let at = e
            .partition
            .and_then(|i| read.get(i))
            .map_or(list, |r| &r.node);
        return Err(invalid(
            at,
            format!("osforge cannot build this layout: {}", e.message),
        ));
    }
    let placed = planned.layout().expect("checked above");
    for (p, r) in placed.iter().zip(read) {
        if p.start_bytes != r.start_bytes {
            let at = r.node.get("part_start").unwrap_or(&r.node);
            f.unmapped(
                at,
                format!(
                    "osforge places partitions one after another from 1 MiB in list order (the '100%' one last): this one starts at {}MiB, not {}MiB",
                    p.start_bytes / MIB,
                    r.start_bytes / MIB
                ),
            );
        }
    }
    disk.notes.push(format!(
        "From {}: numbered in list order; placed as in Airship's table (checked by the import).",
        f.from(list)
    ));
    if read.iter().any(|r| r.end_bytes.is_none()) {
        disk.notes
            .push("'100%' is size: rest, which ends 1 MiB before the end of the disk (the backup GPT's MiB).".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parted_positions_read_binary_and_decimal_units_and_percentages() {
        let cap = 19u64 << 30;
        assert_eq!(parted_position("1284MiB", cap), Ok(Some(1284 * MIB)));
        assert_eq!(parted_position("32GiB", cap), Ok(Some(32 << 30)));
        assert_eq!(parted_position("19G", cap), Ok(Some(19 << 30)));
        assert_eq!(parted_position("500MB", cap), Ok(Some(500_000_000)));
        assert_eq!(parted_position("100%", cap), Ok(None));
        assert_eq!(parted_position("50%", cap), Ok(Some(cap / 2)));
        assert!(
            parted_position("12XB", cap)
                .unwrap_err()
                .contains("unknown unit 'XB'")
        );
        assert!(parted_position("150%", cap).is_err());
        assert!(parted_position("MiB", cap).is_err());
    }

    #[test]
    fn partition_names_come_from_mount_points_and_stay_unique() {
        let mut names = Vec::new();
        assert_eq!(
            unique_name(
                partition_name(PartitionType::Linux, Some("/var/log")),
                &mut names
            ),
            "var-log"
        );
        assert_eq!(
            unique_name(partition_name(PartitionType::Linux, Some("/")), &mut names),
            "root"
        );
        assert_eq!(
            unique_name(partition_name(PartitionType::Linux, None), &mut names),
            "data"
        );
        assert_eq!(
            unique_name(partition_name(PartitionType::Linux, None), &mut names),
            "data2"
        );
    }
}
