#!/usr/bin/env bash
# Benchmark: `osforge disk` from a root tree to a bootable GPT disk, against
# the classic way (qemu-img convert of a raw disk someone already partitioned,
# formatted and filled: that part needs loop devices and mounts, so it is
# left out and the comparison flatters the classic way).
#
# ROOTFS is a configured tree (default: bench/.data/rootfs, the Debian rootfs
# bench/squashfs.sh builds with mmdebstrap).
# For each output (raw, qcow2 zlib, qcow2 zstd) osforge runs RUNS times; the
# median wall time, the output size and osforge's own step times are printed.
# The raw image is then converted by qemu-img (zlib and zstd) for comparison.
#
# Usage: bench/disk.sh [WORKDIR]   (env: RUNS=3 ROOTFS=dir PROFILE=qcow2-host OSFORGE=path)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
rootfs=${ROOTFS:-$here/bench/.data/rootfs}
profile=${PROFILE:-qcow2-host}
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/osforge-disk-bench.XXXXXX")}
mkdir -p "$work"
[[ -d $rootfs ]] || { echo "bench: ROOTFS=$rootfs is not a directory (bench/squashfs.sh builds one)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench: qemu-img is needed" >&2; exit 1; }

osforge=${OSFORGE:-$here/target/release/osforge}
if [[ -z ${OSFORGE:-} ]]; then
    (cd "$here" && cargo build --release --quiet)
fi
cd "$here"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Warm the page cache so every run reads the tree from memory.
tar -C "$rootfs" -cf - . >/dev/null 2>&1 || true

run() { # name, extra args...
    local name=$1; shift
    local times=() out
    for _ in $(seq "$runs"); do
        rm -f "$work/$name"
        local start end
        start=$(date +%s.%N)
        "$osforge" --json disk --profile "$profile" --root "$rootfs" "$@" "$work/$name" > "$work/$name.json"
        end=$(date +%s.%N)
        times+=("$(echo "scale=2; $end - $start" | bc)")
    done
    out=$(printf '%s\n' "${times[@]}" | median)
    printf '%-20s %8.1f s  %10s bytes  steps: %s\n' "$name" "$out" "$(stat -c %s "$work/$name")" \
        "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["disk"]; print(", ".join(f"{n} {s:.1f}" for n, s in d["steps"]))' "$work/$name.json")"
}

echo "rootfs $rootfs ($(du -sh "$rootfs" | cut -f1)), profile $profile, $(nproc) CPUs, median of $runs"
run disk.raw
run disk-zlib.qcow2 --compression zlib
run disk-zstd.qcow2 --compression zstd
for c in zlib zstd; do
    start=$(date +%s.%N)
    qemu-img convert -f raw -O qcow2 -c -o compression_type=$c "$work/disk.raw" "$work/qemu-$c.qcow2"
    end=$(date +%s.%N)
    printf '%-20s %8.1f s  %10s bytes  (conversion of disk.raw only)\n' "qemu-img $c" "$(echo "scale=2; $end - $start" | bc)" "$(stat -c %s "$work/qemu-$c.qcow2")"
done
