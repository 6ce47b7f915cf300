#!/usr/bin/env bash
# Times `osforge iso` against `xorriso -as mkisofs` on the same live-ISO-like
# tree with the same boot setup, and prints the wall-time ratio (target:
# osforge / xorriso <= 1.0), the image sizes and the peak memory of each.
#
#   bench/iso.sh [SQUASHFS_MB] [SMALL_FILES] [RUNS]
#
# Defaults: a 600 MB incompressible "squashfs", 3000 small files, 3 runs
# each (median reported), after one warm-up run each so both read the tree
# from the page cache. Work files go to $BENCH_DIR (default: a temporary
# directory under /var/tmp, removed at the end).
#
# What each side does:
#   osforge: builds GRUB's images (grub-mkimage twice), the FAT ESP, and the
#            ISO, then fsyncs it (it never leaves a partial image, and syncs
#            before the rename that publishes it).
#   xorriso: only writes the ISO; its GRUB images and efiboot.img are made
#            beforehand (not timed, but the time of that prep step is
#            printed) with the same grub-mkimage and mkfs.fat + mcopy, and
#            it gets the same options Airship used:
#            -iso-level 3 -R -J -b ... -no-emul-boot -boot-load-size 4
#            -boot-info-table --grub2-boot-info --grub2-mbr boot_hybrid.img
#            -eltorito-alt-boot -e efiboot.img -no-emul-boot
#            -append_partition 2 0xef efiboot.img
#            "xorriso+sync" also fsyncs the output, for a like-for-like figure.
set -euo pipefail

SQUASHFS_MB=${1:-600}
SMALL_FILES=${2:-3000}
RUNS=${3:-3}
MTIME=1700000000

here=$(cd "$(dirname "$0")/.." && pwd)
osforge="$here/target/release/osforge"
(cd "$here" && cargo build --release --quiet)

for tool in xorriso grub-mkimage mkfs.fat mcopy mmd /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done

if [[ -n ${BENCH_DIR:-} ]]; then
    work=$BENCH_DIR
    mkdir -p "$work"
else
    work=$(mktemp -d /var/tmp/osforge-bench-iso.XXXXXX)
    trap 'rm -rf "$work"' EXIT
fi
stage=$work/stage

echo "bench: staging ${SQUASHFS_MB} MB squashfs + ${SMALL_FILES} small files in $work" >&2
rm -rf "$stage"
mkdir -p "$stage/live" "$stage/boot/grub" "$stage/openstack/latest" "$stage/pool"
head -c "$((SQUASHFS_MB << 20))" /dev/urandom >"$stage/live/filesystem.squashfs"
head -c $((11 << 20)) /dev/urandom >"$stage/live/vmlinuz"
head -c $((60 << 20)) /dev/urandom >"$stage/live/initrd.img"
for ((i = 0; i < SMALL_FILES; i++)); do
    d=$stage/pool/d$((i % 50))
    [[ -d $d ]] || mkdir -p "$d"
    head -c $((i * 37 % 9000 + 1)) /dev/urandom >"$d/file-$i.deb"
done
echo '{"uuid": "bench"}' >"$stage/openstack/latest/meta_data.json"
cat >"$stage/boot/grub/grub.cfg" <<'EOF'
set timeout=1
menuentry live {
    linux /live/vmlinuz boot=live ds=ConfigDrive console=ttyS0,115200n8
    initrd /live/initrd.img
}
EOF

# The same GRUB images osforge embeds, for xorriso.
prep_start=$(date +%s.%N)
xstage=$work/xorriso-boot
rm -rf "$xstage"
mkdir -p "$xstage/boot/grub/i386-pc" "$xstage/.disk/id"
echo bench >"$xstage/.disk/id/bench"
printf 'search --no-floppy --set=root --file /.disk/id/bench\nset prefix=($root)/boot/grub\nconfigfile /boot/grub/grub.cfg\n' >"$work/early.cfg"
bios_mods="biosdisk iso9660 part_msdos part_gpt fat search configfile normal echo test ls cat serial terminal linux halt reboot"
efi_mods="iso9660 part_msdos part_gpt fat search configfile normal echo test ls cat serial terminal linux halt reboot efi_gop"
# shellcheck disable=SC2086
grub-mkimage -d /usr/lib/grub/i386-pc -O i386-pc-eltorito -p /boot/grub -c "$work/early.cfg" \
    -o "$xstage/boot/grub/i386-pc/eltorito.img" $bios_mods
# shellcheck disable=SC2086
grub-mkimage -d /usr/lib/grub/x86_64-efi -O x86_64-efi -p /boot/grub -c "$work/early.cfg" \
    -o "$work/BOOTX64.EFI" $efi_mods
rm -f "$work/efiboot.img"
mkfs.fat -C -n EFIBOOT "$work/efiboot.img" 2048 >/dev/null
mmd -i "$work/efiboot.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/efiboot.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
prep_end=$(date +%s.%N)

run_osforge() {
    "$osforge" iso "$stage" "$work/osforge.iso" --volume-id config-2 --bios --uefi \
        --mtime "$MTIME" --quiet
}
run_xorriso() {
    SOURCE_DATE_EPOCH=$MTIME xorriso -as mkisofs -quiet -iso-level 3 -R -J -volid config-2 \
        -o "$work/xorriso.iso" \
        -b boot/grub/i386-pc/eltorito.img -no-emul-boot -boot-load-size 4 -boot-info-table \
        --grub2-boot-info --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img \
        -eltorito-alt-boot -e --interval:appended_partition_2:all:: -no-emul-boot \
        -append_partition 2 0xef "$work/efiboot.img" \
        "$stage" "$xstage" 2>/dev/null
}
run_xorriso_sync() {
    run_xorriso
    sync "$work/xorriso.iso"
}

# Prints "seconds peak_kib" for one run of $1.
measure() {
    local out
    out=$( { /usr/bin/time -f '%e %M' bash -c "$(declare -f "$1" run_xorriso); \
        osforge='$osforge' stage='$stage' work='$work' xstage='$xstage' MTIME='$MTIME' $1" ; } 2>&1 >/dev/null | tail -1)
    echo "$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A wall rss
for name in run_osforge run_xorriso run_xorriso_sync; do
    measure "$name" >/dev/null # warm-up: page cache, binary
done
for ((r = 0; r < RUNS; r++)); do
    for name in run_osforge run_xorriso run_xorriso_sync; do
        read -r secs kib < <(measure "$name")
        wall[$name]+="$secs "
        rss[$name]+="$kib "
    done
done

w_os=$(tr ' ' '\n' <<<"${wall[run_osforge]}" | grep . | median)
w_x=$(tr ' ' '\n' <<<"${wall[run_xorriso]}" | grep . | median)
w_xs=$(tr ' ' '\n' <<<"${wall[run_xorriso_sync]}" | grep . | median)
m_os=$(tr ' ' '\n' <<<"${rss[run_osforge]}" | grep . | sort -n | tail -1)
m_x=$(tr ' ' '\n' <<<"${rss[run_xorriso]}" | grep . | sort -n | tail -1)
s_os=$(stat -c %s "$work/osforge.iso")
s_x=$(stat -c %s "$work/xorriso.iso")
content=$(du -sb "$stage" | cut -f1)

printf '\nISO bench: %s MB squashfs, %s small files, %s bytes staged, median of %s runs\n' \
    "$SQUASHFS_MB" "$SMALL_FILES" "$content" "$RUNS"
printf '  %-34s %8s s  %9s bytes  peak RSS %6s MiB\n' \
    "osforge iso (GRUB+ESP+ISO+fsync)" "$w_os" "$s_os" "$((m_os / 1024))" \
    "xorriso -as mkisofs" "$w_x" "$s_x" "$((m_x / 1024))"
printf '  %-34s %8s s\n' "xorriso -as mkisofs + sync" "$w_xs"
printf '  %-34s %8.2f s (not timed above)\n' "xorriso's prep (grub-mkimage, FAT)" \
    "$(echo "$prep_end - $prep_start" | bc)"
printf '  wall ratio osforge/xorriso:        %.2f (target <= 1.0)\n' "$(echo "$w_os / $w_x" | bc -l)"
printf '  wall ratio osforge/(xorriso+sync): %.2f\n' "$(echo "$w_os / $w_xs" | bc -l)"
printf '  size ratio osforge/xorriso:        %.4f\n' "$(echo "$s_os / $s_x" | bc -l)"
