#!/usr/bin/env bash
# Benchmark: `osforge squashfs` against `mksquashfs` on the same root filesystem,
# same compressor, level, block size, thread count and fragment policy (tail
# ends packed: -always-use-fragments), both deduplicating and exportable.
# Prints wall time, image size and peak RSS of each, and the ratios.
#
#   bench/squashfs.sh                  # builds a Debian rootfs once (mmdebstrap, cached)
#   ROOTFS=/some/dir bench/squashfs.sh # or use your own tree
#   COMPS="zstd gzip xz lz4" BLOCK=1M JOBS=2 REPEAT=3 bench/squashfs.sh
#
# Targets (issue #2): wall <= 0.85 x mksquashfs for zstd and gzip, size <= 1.00 x,
# peak RSS <= 100 MB.
set -euo pipefail

cd "$(dirname "$0")/.."
COMPS=${COMPS:-"zstd gzip"}
BLOCK=${BLOCK:-128K}
JOBS=${JOBS:-$(nproc)}
REPEAT=${REPEAT:-1}
WORK=${WORK:-bench/.data}
ROOTFS=${ROOTFS:-$WORK/rootfs}
OSFORGE=${OSFORGE:-target/release/osforge}

mkdir -p "$WORK"
if [ ! -d "$ROOTFS" ]; then
    echo "building the benchmark rootfs in $ROOTFS (mmdebstrap, a few minutes, once)" >&2
    # The same package set as osforge's base profile: kernel, systemd, cloud-init.
    mmdebstrap --variant=important \
        --include=linux-image-amd64,systemd-sysv,cloud-init,live-boot,openssh-server,sudo,locales \
        bookworm "$ROOTFS.tmp" >&2
    mv "$ROOTFS.tmp" "$ROOTFS"
fi
cargo build --release --quiet

level_for() {
    case "$1" in
        gzip) echo 9 ;; zstd) echo 15 ;; xz) echo 6 ;; lz4) echo "" ;;
    esac
}

# time_run OUT_VAR_PREFIX CMD...: best of $REPEAT runs, "wall_s peak_kb"
best_of() {
    local best_wall="" best_rss=""
    for _ in $(seq "$REPEAT"); do
        # Same page-cache state for both tools: the tree is read once beforehand.
        tar -cf /dev/null -C "$ROOTFS" . 2>/dev/null || true
        local line=""
        if /usr/bin/time -o "$WORK/last.time" -f "%e %M" "$@" >/dev/null 2>"$WORK/last.err"; then
            line=$(tail -n 1 "$WORK/last.time")
        fi
        if ! [[ "$line" =~ ^[0-9.]+\ [0-9]+$ ]]; then
            echo "failed: $*" >&2
            cat "$WORK/last.err" >&2
            exit 1
        fi
        local wall=${line% *} rss=${line#* }
        if [ -z "$best_wall" ] || awk "BEGIN{exit !($wall < $best_wall)}"; then
            best_wall=$wall best_rss=$rss
        fi
    done
    echo "$best_wall $best_rss"
}

ROOTFS=$(readlink -f "$ROOTFS")
files=$(find "$ROOTFS" | wc -l)
bytes=$(du -sb "$ROOTFS" | cut -f1)
echo "rootfs: $ROOTFS, $files entries, $((bytes / 1048576)) MiB; block $BLOCK, $JOBS threads, best of $REPEAT"
printf '%-5s %-10s %9s %10s %9s\n' comp tool wall_s size_MiB rss_MB
for comp in $COMPS; do
    level=$(level_for "$comp")
    m_out="$WORK/mksquashfs-$comp.sqfs" o_out="$WORK/osforge-$comp.sqfs"
    m_level=() o_level=()
    if [ -n "$level" ]; then m_level=(-Xcompression-level "$level"); o_level=(--level "$level"); fi
    if [ "$comp" = xz ]; then m_level=(); fi # mksquashfs 4.5 xz has no level option; 6 is its preset
    rm -f "$m_out" "$o_out"
    read -r m_wall m_rss < <(best_of mksquashfs "$ROOTFS" "$m_out" -noappend -no-progress -quiet \
        -comp "$comp" "${m_level[@]}" -b "$BLOCK" -processors "$JOBS" -always-use-fragments)
    read -r o_wall o_rss < <(best_of "$OSFORGE" squashfs --quiet "$ROOTFS" "$o_out" \
        --comp "$comp" "${o_level[@]}" --block-size "$BLOCK" --jobs "$JOBS")
    m_size=$(stat -c %s "$m_out") o_size=$(stat -c %s "$o_out")
    printf '%-5s %-10s %9.2f %10.1f %9.1f\n' "$comp" mksquashfs "$m_wall" "$(echo "$m_size/1048576" | bc -l)" "$(echo "$m_rss/1024" | bc -l)"
    printf '%-5s %-10s %9.2f %10.1f %9.1f\n' "$comp" osforge "$o_wall" "$(echo "$o_size/1048576" | bc -l)" "$(echo "$o_rss/1024" | bc -l)"
    printf '%-5s %-10s wall %.3f x   size %.4f x   rss %.3f x\n' "$comp" ratio \
        "$(echo "$o_wall/$m_wall" | bc -l)" "$(echo "$o_size/$m_size" | bc -l)" "$(echo "$o_rss/$m_rss" | bc -l)"
    rm -f "$m_out" "$o_out"
done
