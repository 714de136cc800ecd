#!/bin/sh
# Boot an armvirt guest image under QEMU TCG (a stand-in while armvirt is not
# available).  Usage: images/run-qemu.sh NAME [MEM_MiB] [CPU]
#
# QEMU only puts its DTB at RAM base for an ELF if it fits below the image, and
# its 1 MiB DTB does not; so when dtc is installed this script loads a compact
# copy at RAM base, with /cpus/cpu@0 clock-frequency = 2400000000 added (the
# runtime finds it by probing RAM base when x0 is 0).  Without dtc the images
# fall back to 128 MiB RAM and cycles_per_tick = 1.
#
# Environment: GIC=2|3 selects the interrupt controller (default 2);
# SMP=N gives the VM N CPUs (default 1; the DTB then lists N cpu@ nodes);
# ICOUNT=N adds `-icount shift=N` so that the virtual counter follows
# executed instructions instead of host time (the `timer` image's latency
# bounds only hold then: without it TCG's interrupts are as late as the host
# scheduler makes them).
set -eu
name=$1
mem=${2:-128}
cpu=${3:-cortex-a57}
here=$(cd "$(dirname "$0")" && pwd)
machine=virt,virtualization=off,gic-version=${GIC:-2}
smp="-smp ${SMP:-1}"
icount=
[ -n "${ICOUNT:-}" ] && icount="-icount shift=$ICOUNT"
dtbargs=
if command -v dtc >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    qemu-system-aarch64 -M "$machine,dumpdtb=$tmp/virt.dtb" -cpu "$cpu" $smp -m "${mem}M" \
        -display none >/dev/null 2>&1
    dtc -q -I dtb -O dts "$tmp/virt.dtb" |
        sed '/^\t\tcpu@0 {$/a\			clock-frequency = <2400000000>;' >"$tmp/virt.dts"
    dtc -q -I dts -O dtb -o "$tmp/small.dtb" "$tmp/virt.dts"
    dtbargs="-device loader,file=$tmp/small.dtb,addr=0x40000000,force-raw=on"
fi
# shellcheck disable=SC2086
timeout 60 qemu-system-aarch64 -M "$machine" -cpu "$cpu" $smp -m "${mem}M" -nographic \
    -no-reboot $icount $dtbargs -kernel "$here/$name.elf"
