#!/usr/bin/env bash
# Benchmark: `osforge qcow2` against `qemu-img convert` on the same raw disk.
#
# The raw disk is what the disk builder produces, minus the partition table:
#   0 .. 1 MiB         hole (where GPT and alignment padding go)
#   1 MiB .. +fs size  ext4 made by `mke2fs -d` from a copy of parts of /usr
#                      (binaries, headers, Python: ~450 MB of mixed data); the
#                      filesystem's free blocks stay holes, as mke2fs leaves them
#   then 256 MiB       trailing hole (unpartitioned space)
# Both tools read it from the page cache (it is read once before timing).
#
# For zlib and for zstd, each tool runs RUNS times (alternating); the median
# wall time is compared, with the output sizes and peak RSS (/usr/bin/time -v).
# Targets: osforge wall <= 0.6 x qemu-img, size <= 1.02 x, same algorithm and
# cluster size, each at its default level.
#
# Usage: bench/qcow2.sh [WORKDIR]   (env: RUNS=3 CLUSTER=64K OSFORGE=path)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
cluster=${CLUSTER:-64K}
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/osforge-qcow2-bench.XXXXXX")}
mkdir -p "$work"

for tool in qemu-img mke2fs /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is needed" >&2; exit 1; }
done

osforge=${OSFORGE:-$here/target/release/osforge}
if [[ -z ${OSFORGE:-} ]]; then
    (cd "$here" && cargo build --release --quiet)
fi

raw=$work/disk.raw
if [[ ! -f $raw ]]; then
    stage=$work/stage
    rm -rf "$stage"
    mkdir -p "$stage"
    for src in /usr/bin /usr/include /usr/lib/python3*; do
        [[ -d $src ]] || continue
        # Hard links when /usr is on the same filesystem: no copying.
        cp -al "$src" "$stage/" 2>/dev/null || cp -a "$src" "$stage/"
    done
    stage_mib=$(du -sm "$stage" | cut -f1)
    fs_mib=$((stage_mib * 3 / 2 + 64))
    truncate -s $(((1 + fs_mib + 256) * 1024 * 1024)) "$raw"
    mke2fs -q -F -t ext4 -d "$stage" -E offset=$((1024 * 1024)) "$raw" "${fs_mib}M"
    rm -rf "$stage"
fi
cat "$raw" >/dev/null # into the page cache for both tools

cluster_bytes=$(numfmt --from=iec "$cluster")
echo "raw disk: $raw, $(du -h --apparent-size "$raw" | cut -f1) virtual," \
    "$(du -h "$raw" | cut -f1) allocated; cluster size $cluster; $runs runs; $(nproc) CPUs"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# Runs a command under /usr/bin/time -v; prints "wall_s cpu_s rss_kib".
timed() {
    local log=$work/time.log
    /usr/bin/time -v "$@" 2>"$log" >/dev/null || { cat "$log" >&2; return 1; }
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, t, ":"); wall = 0
                                   for (i = 1; i <= n; i++) wall = wall * 60 + t[i] }
        /User time/   { cpu += $2 }
        /System time/ { cpu += $2 }
        /Maximum resident set size/ { rss = $2 }
        END { printf "%.2f %.2f %d\n", wall, cpu, rss }' "$log"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
verdict() { if (($(echo "$1 <= $2" | bc -l))); then echo ok; else echo MISSED; fi; }

status=0
printf '\n%-5s %-9s %8s %8s %9s %12s\n' alg tool wall_s cpu_s rss_MiB size_bytes
for alg in zlib zstd; do
    ours=$work/osforge-$alg.qcow2
    theirs=$work/qemu-img-$alg.qcow2
    qemu_opts="cluster_size=$cluster_bytes"
    [[ $alg == zstd ]] && qemu_opts+=",compression_type=zstd"
    : >"$work/ours.txt"
    : >"$work/theirs.txt"
    for _ in $(seq "$runs"); do
        timed "$osforge" --quiet qcow2 "$raw" "$ours" --compress "$alg" \
            --cluster-size "$cluster" >>"$work/ours.txt"
        timed qemu-img convert -c -f raw -O qcow2 -o "$qemu_opts" "$raw" "$theirs" \
            >>"$work/theirs.txt"
    done
    qemu-img compare -q -f raw -F qcow2 "$raw" "$ours" || { echo "bench: $ours differs" >&2; exit 1; }
    qemu-img check -q "$ours" || { echo "bench: $ours fails qemu-img check" >&2; exit 1; }

    our_wall=$(cut -d' ' -f1 "$work/ours.txt" | median)
    their_wall=$(cut -d' ' -f1 "$work/theirs.txt" | median)
    our_cpu=$(cut -d' ' -f2 "$work/ours.txt" | median)
    their_cpu=$(cut -d' ' -f2 "$work/theirs.txt" | median)
    our_rss=$(cut -d' ' -f3 "$work/ours.txt" | median)
    their_rss=$(cut -d' ' -f3 "$work/theirs.txt" | median)
    our_size=$(stat -c %s "$ours")
    their_size=$(stat -c %s "$theirs")
    printf '%-5s %-9s %8s %8s %9.1f %12d\n' "$alg" osforge "$our_wall" "$our_cpu" \
        "$(echo "$our_rss / 1024" | bc -l)" "$our_size"
    printf '%-5s %-9s %8s %8s %9.1f %12d\n' "$alg" qemu-img "$their_wall" "$their_cpu" \
        "$(echo "$their_rss / 1024" | bc -l)" "$their_size"
    wall_ratio=$(echo "$our_wall / $their_wall" | bc -l)
    size_ratio=$(echo "$our_size / $their_size" | bc -l)
    wall_ok=$(verdict "$wall_ratio" 0.6)
    size_ok=$(verdict "$size_ratio" 1.02)
    printf '%-5s ratios: wall %.3f (target <= 0.6: %s), size %.4f (target <= 1.02: %s), cpu %.3f\n' \
        "$alg" "$wall_ratio" "$wall_ok" "$size_ratio" "$size_ok" "$(echo "$our_cpu / $their_cpu" | bc -l)"
    [[ $wall_ok == ok && $size_ok == ok ]] || status=1
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "outputs kept in $work"
exit $status
