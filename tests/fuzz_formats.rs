//! Bounded fuzzing of the writers (issue 10): proptest generates trees (odd
//! and long names, sparse, empty and incompressible files, links, FIFOs,
//! modes, times, xattrs) and raw disks; osforge writes them with generated
//! settings, and the format's reference reader must read back exactly what
//! went in: unsquashfs for squashfs, osirrox for ISO 9660 + Rock Ridge,
//! fsck.fat and mtools for FAT, qemu-img check and compare for qcow2, sgdisk
//! and sfdisk for GPT. A writer that refuses its input must do it with one
//! line, exit 2 and no output file. `OSFORGE_FUZZ_CASES` sets the cases of every
//! target (default: each its own); each target prints its executions and seed.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use support::fuzz::{self, Features, Kind, Node};
use support::*;

fn tool(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// osforge's own verdict: success, or a clean refusal (exit 2, one line,
/// nothing at the output path). Returns whether it wrote the image.
fn wrote(out: &Output, image: &Path) -> Result<bool, String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Ok(true);
    }
    if out.status.code() != Some(2) || stderr.trim().lines().count() != 1 || image.exists() {
        return Err(format!(
            "failed without a clean refusal (exit {:?}, output left: {}): {stderr}",
            out.status.code(),
            image.exists()
        ));
    }
    Ok(false)
}

fn check_same(
    source: &Path,
    extracted: &Path,
    opts: &SnapshotOptions,
    ignore: &[&str],
) -> Result<(), String> {
    let problems = diff_snapshots(&snapshot(source, opts), &snapshot(extracted, opts), ignore);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems[..problems.len().min(8)].join("\n"))
    }
}

/// Names, types, contents and what `ignore` does not name, of a tree a
/// reader extracted into a root of its own making.
fn check_extracted(source: &Path, extracted: &Path, ignore: &[&str]) -> Result<(), String> {
    fs::set_permissions(extracted, fs::metadata(source).unwrap().permissions()).unwrap();
    let names_and_bytes = SnapshotOptions {
        xattrs: false,
        contents: true,
    };
    check_same(source, extracted, &names_and_bytes, ignore)
}

const POSIX: Features = Features {
    links: true,
    special: true,
    xattrs: true,
    posix_names: true,
    max_file: 300_000,
};

#[test]
fn squashfs_round_trips_through_unsquashfs() {
    require_root();
    require_tool("unsquashfs", "squashfs-tools");
    let settings = (
        prop::sample::select(vec!["gzip", "xz", "zstd", "lz4"]),
        prop::sample::select(vec!["4K", "16K", "128K", "1M"]),
        any::<[bool; 4]>(),
        1usize..4,
    );
    fuzz::run(
        "squashfs",
        150,
        (fuzz::tree(POSIX, 40), settings),
        |(nodes, (comp, block, flags, jobs))| {
            let work = fuzz::scratch("fuzz-sqfs");
            let src = work.path().join("src");
            fs::create_dir(&src).unwrap();
            fuzz::materialize(&src, &nodes, POSIX);
            let image = work.path().join("out.sqfs");
            let mut cmd = osforge();
            cmd.arg("squashfs").arg(&src).arg(&image);
            cmd.args([
                "--comp",
                comp,
                "--block-size",
                block,
                "-j",
                &jobs.to_string(),
                "-q",
            ]);
            for (on, flag) in flags.iter().zip([
                "--no-fragments",
                "--no-tailends",
                "--no-dedup",
                "--no-exports",
            ]) {
                if *on {
                    cmd.arg(flag);
                }
            }
            let out = cmd.output().unwrap();
            if !wrote(&out, &image)? {
                return Err(format!(
                    "refused a tree the format can hold: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let extracted = work.path().join("x");
            tool(
                Command::new("unsquashfs")
                    .args(["-no-progress", "-quiet", "-d"])
                    .arg(&extracted)
                    .arg(&image),
            )?;
            let all = SnapshotOptions {
                xattrs: true,
                contents: true,
            };
            check_same(&src, &extracted, &all, &[])
        },
    );
}

#[test]
fn iso_round_trips_through_osirrox() {
    require_tool("osirrox", "xorriso");
    // Rock Ridge holds names, types, modes and symlinks; the ISO writer
    // refuses what ISO 9660 cannot (FIFOs) and does not keep xattrs.
    let features = Features {
        special: false,
        xattrs: false,
        ..POSIX
    };
    fuzz::run(
        "iso",
        200,
        // Rock Ridge keeps a symlink's target as components, so a trailing
        // or doubled slash does not survive (xorriso's own images lose them too).
        fuzz::tree(features, 40).prop_filter("names osforge iso adds", |nodes| {
            !nodes.iter().any(|n| {
                n.name == ".disk"
                    || n.name == ".rr_moved"
                    || matches!(&n.kind, Kind::Symlink(t) if t.len() > 1 && t.ends_with('/') || t.contains("//"))
            })
        }),
        |nodes: Vec<Node>| {
            let work = fuzz::scratch("fuzz-iso");
            let src = work.path().join("src");
            fs::create_dir(&src).unwrap();
            fuzz::materialize(&src, &nodes, features);
            let image = work.path().join("out.iso");
            let out = osforge()
                .args(["iso", "-q", "-V", "FUZZ"])
                .arg(&src)
                .arg(&image)
                .output()
                .unwrap();
            if !wrote(&out, &image)? {
                return Err(format!(
                    "refused a tree ISO 9660 with Rock Ridge can hold: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let extracted = work.path().join("x");
            tool(Command::new("osirrox")
                .arg("-indev")
                .arg(&image)
                .args(["-osirrox", "on:sparse=1m", "-extract", "/"])
                .arg(&extracted))?;
            for extra in [".disk", ".rr_moved"] {
                let _ = fs::remove_dir_all(extracted.join(extra));
            }
            // Modes and owners are rational Rock Ridge's (mkisofs -r: all
            // may read, none write, execute kept), as for every boot medium;
            // hard links come back as copies unless osirrox is asked.
            check_extracted(&src, &extracted, &["mtime", "owner", "mode", "hard_links"])
        },
    );
}

#[test]
fn fat_round_trips_through_fsck_fat_and_mtools() {
    require_tool("fsck.fat", "dosfstools");
    require_tool("mcopy", "mtools");
    let refused = AtomicUsize::new(0);
    let features = Features {
        links: false,
        special: false,
        xattrs: false,
        posix_names: false,
        max_file: 200_000,
    };
    fuzz::run(
        "fat",
        200,
        (
            fuzz::tree(features, 40),
            prop::sample::select(vec![None, Some("12"), Some("16"), Some("32")]),
        ),
        |(nodes, kind)| {
            let work = fuzz::scratch("fuzz-fat");
            let src = work.path().join("src");
            fs::create_dir(&src).unwrap();
            fuzz::materialize(&src, &nodes, features);
            let image = work.path().join("out.img");
            let mut cmd = osforge();
            cmd.args(["fat", "-q", "--mtime", "1700000000"])
                .arg(&src)
                .arg(&image);
            if let Some(kind) = kind {
                cmd.args(["--fat", kind]);
                if kind == "32" {
                    cmd.args(["--size", "40M"]);
                }
            }
            let out = cmd.output().unwrap();
            if !wrote(&out, &image)? {
                // Sparse files can outgrow FAT12's 32 MiB, and a FAT32 volume
                // has a minimum size: a refusal must say so.
                let stderr = String::from_utf8_lossy(&out.stderr);
                return if kind.is_some() && (stderr.contains("FAT") || stderr.contains("size")) {
                    refused.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                } else {
                    Err(format!("refused: {stderr}"))
                };
            }
            tool(Command::new("fsck.fat").arg("-n").arg(&image))?;
            let extracted = work.path().join("x");
            fs::create_dir(&extracted).unwrap();
            // mcopy fails on a wildcard that matches nothing.
            if fs::read_dir(&src).unwrap().next().is_some() {
                tool(
                    Command::new("mcopy")
                        .args(["-s", "-n", "-m", "-i"])
                        .arg(&image)
                        .arg("::/*")
                        .arg(&extracted)
                        .env("MTOOLS_SKIP_CHECK", "1"),
                )?;
            }
            // FAT has no owners or modes, and keeps times to two seconds.
            check_extracted(&src, &extracted, &["mtime", "owner", "mode"])
        },
    );
    eprintln!(
        "fuzz fat: {} cases refused (FAT12 too small or FAT32 too big for the size asked)",
        refused.into_inner()
    );
}

/// Written sectors of a raw disk: offset, count, a fill byte or else noise
/// from the seed.
type Extent = (u64, u64, Option<u8>, u64);

/// A raw disk's size in sectors and its written extents.
fn raw_disk() -> impl Strategy<Value = (u64, Vec<Extent>)> {
    (
        1u64..32768,
        prop::collection::vec(
            (
                0u64..32768,
                1u64..2048,
                prop::option::of(any::<u8>()),
                any::<u64>(),
            ),
            0..12,
        ),
    )
}

#[test]
fn qcow2_passes_qemu_img_check_and_compares_equal_to_its_raw_disk() {
    require_tool("qemu-img", "qemu-utils");
    fuzz::run(
        "qcow2",
        150,
        (
            raw_disk(),
            prop::sample::select(vec!["none", "zlib", "zstd"]),
            prop::sample::select(vec!["4K", "64K", "512K", "2M"]),
            1usize..4,
        ),
        |((sectors, extents), compress, cluster, jobs)| {
            let work = fuzz::scratch("fuzz-qcow2");
            let raw = work.path().join("disk.raw");
            let f = fs::File::create(&raw).unwrap();
            f.set_len(sectors * 512).unwrap();
            for (at, len, fill, seed) in &extents {
                let at = at % sectors;
                let len = (*len).min(sectors - at) as usize * 512;
                let bytes = match fill {
                    Some(b) => vec![*b; len],
                    None => noise(len, *seed),
                };
                std::os::unix::fs::FileExt::write_all_at(&f, &bytes, at * 512).unwrap();
            }
            drop(f);
            let image = work.path().join("disk.qcow2");
            let out = osforge()
                .args([
                    "qcow2",
                    "-q",
                    "--compress",
                    compress,
                    "--cluster-size",
                    cluster,
                ])
                .args(["-j", &jobs.to_string()])
                .arg(&raw)
                .arg(&image)
                .output()
                .unwrap();
            if !wrote(&out, &image)? {
                return Err(format!("refused: {}", String::from_utf8_lossy(&out.stderr)));
            }
            tool(Command::new("qemu-img").arg("check").arg(&image))?;
            tool(
                Command::new("qemu-img")
                    .args(["compare", "-f", "raw", "-F", "qcow2"])
                    .arg(&raw)
                    .arg(&image),
            )?;
            Ok(())
        },
    );
}

#[test]
fn gpt_tables_pass_sgdisk_and_read_back_through_sfdisk() {
    use osforge::formats::gpt::{Entry, Guid, PartitionTable, ProtectiveMbr};
    require_tool("sgdisk", "gdisk");
    require_tool("sfdisk", "fdisk");
    let (accepted, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let partition = (
        0u64..200_000,
        1u64..100_000,
        prop::sample::select(vec![
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "21686148-6449-6E6F-744E-656564454649",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
        ]),
        any::<[u8; 16]>(),
        "[A-Za-z0-9 é-]{0,40}",
        any::<u64>(),
    );
    fuzz::run(
        "gpt",
        500,
        (
            67u64..400_000,
            prop::collection::vec((1u32..130, partition), 0..10),
        ),
        |(sectors, parts)| {
            let work = fuzz::scratch("fuzz-gpt");
            let size = sectors * 512;
            let mut table = PartitionTable::new(size, Guid::from_random_bytes([7; 16]))
                .map_err(|e| format!("a {size}-byte disk refused: {e}"))?;
            let mut added = Vec::new();
            for (number, (first, len, kind, guid, name, attrs)) in parts {
                let entry = Entry {
                    type_guid: kind.parse().unwrap(),
                    unique_guid: Guid::from_random_bytes(guid),
                    first_lba: first,
                    last_lba: first + len - 1,
                    attributes: attrs & 0x7,
                    name: name.clone(),
                };
                // Bad partitions must be refused here, with a reason.
                match table.add(number, entry.clone()) {
                    Ok(()) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        added.push((number, entry))
                    }
                    Err(e) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        let text = e.to_string();
                        if text.is_empty() || text.contains('\n') {
                            return Err(format!("unclear refusal: {text:?}"));
                        }
                    }
                }
            }
            let bytes = table.to_bytes(&ProtectiveMbr::without_boot_code(0x1234_5678));
            let disk = work.path().join("disk.img");
            let f = fs::File::create(&disk).unwrap();
            f.set_len(size).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(&bytes.head, 0).unwrap();
            f.write_all_at(&bytes.tail, bytes.tail_offset_bytes)
                .unwrap();
            drop(f);
            let verify = tool(Command::new("sgdisk").arg("-v").arg(&disk))?;
            let said = String::from_utf8_lossy(&verify.stdout);
            if !said.contains("No problems found") {
                return Err(format!("sgdisk -v: {said}"));
            }
            let dump = tool(Command::new("sfdisk").arg("--json").arg(&disk))?;
            let json: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap();
            let listed = json["partitiontable"]["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if listed.len() != added.len() {
                return Err(format!(
                    "sfdisk lists {} of {} partitions",
                    listed.len(),
                    added.len()
                ));
            }
            added.sort_by_key(|(n, _)| *n);
            for ((number, e), p) in added.iter().zip(&listed) {
                let node = p["node"].as_str().unwrap_or("");
                let want = (
                    format!("{}{number}", disk.display()),
                    e.first_lba,
                    e.last_lba - e.first_lba + 1,
                    e.type_guid.to_upper(),
                    e.unique_guid.to_upper(),
                    e.name.as_str(),
                );
                let got = (
                    node.to_string(),
                    p["start"].as_u64().unwrap_or(0),
                    p["size"].as_u64().unwrap_or(0),
                    p["type"].as_str().unwrap_or("").to_string(),
                    p["uuid"].as_str().unwrap_or("").to_string(),
                    p["name"].as_str().unwrap_or(""),
                );
                if want != got {
                    return Err(format!(
                        "partition {number}: wrote {want:?}, sfdisk read {got:?}"
                    ));
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "fuzz gpt: {} partitions written and read back, {} refused",
        accepted.into_inner(),
        refused.into_inner()
    );
}
