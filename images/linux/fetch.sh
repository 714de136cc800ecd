#!/bin/sh
# Fetch Debian bookworm's stock arm64 kernel (the linux-image-*-arm64 package that
# linux-image-arm64 depends on today) and busybox-static for arm64 with apt, and
# build the busybox initramfs.  Writes, into OUT (default images/linux/out, never
# committed):
#     vmlinuz              the kernel: an arm64 Image with an EFI/PE stub header
#     initramfs.cpio.gz    cpio newc: busybox, /dev/console, /init (./init)
#     initramfs-vda.cpio.gz  the same with the kernel's virtio_mmio, virtio_blk and ext4
#                          modules (and what ext4 needs) in /lib/modules and /init = ./init-vda,
#                          which loads them and switch_roots into root= (a virtio-blk disk)
#     versions             the two package versions used
# Needs root or sudo (dpkg --add-architecture, apt-get update) and the network.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/out}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! dpkg --print-foreign-architectures | grep -qx arm64 && [ "$(dpkg --print-architecture)" != arm64 ]; then
    $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq

# linux-image-arm64 is the metapackage; its Depends names the current kernel package.
KPKG=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-arm64\)\(:arm64\)\{0,1\}$/\1/p' | head -n 1)
[ -n "$KPKG" ] || { echo "fetch.sh: linux-image-arm64:arm64 names no kernel package" >&2; exit 1; }

mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
[ "$(id -u)" -ne 0 ] || chown _apt "$WORK" 2>/dev/null || true   # apt downloads as _apt
cd "$WORK"
apt-get download -q "$KPKG:arm64" busybox-static:arm64 >/dev/null
dpkg-deb -x linux-image-*_arm64.deb kernel
dpkg-deb -x busybox-static_*_arm64.deb busybox

cp kernel/boot/vmlinuz-* "$OUT/vmlinuz"
python3 "$HERE/mkinitramfs.py" --busybox busybox/bin/busybox --init "$HERE/init" -o "$OUT/initramfs.cpio.gz"
# Debian's kernel builds these as modules (CONFIG_VIRTIO_MMIO, VIRTIO_BLK, EXT4_FS =m):
# the disk-root initramfs carries them, in the order they load (ext4 needs crc16, mbcache, jbd2 and a crc32c)
MODS=$(ls -d kernel/lib/modules/*/kernel)
FILES=""
for m in drivers/virtio/virtio_mmio drivers/block/virtio_blk lib/crc16 fs/mbcache fs/jbd2/jbd2 crypto/crc32c_generic fs/ext4/ext4; do
    [ -f "$MODS/$m.ko" ] || { echo "fetch.sh: $MODS/$m.ko missing (is it built in or compressed now?)" >&2; exit 1; }
    FILES="$FILES --file $MODS/$m.ko=lib/modules/$(basename "$m").ko"
done
# shellcheck disable=SC2086
python3 "$HERE/mkinitramfs.py" --busybox busybox/bin/busybox --init "$HERE/init-vda" $FILES \
    -o "$OUT/initramfs-vda.cpio.gz"
for deb in linux-image-*_arm64.deb busybox-static_*_arm64.deb; do
    dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"
done > "$OUT/versions"
echo "fetch.sh: $(paste -sd ' ' "$OUT/versions") -> $OUT"
