"""Debian's stock arm64 kernel mounts its root from a virtio-blk disk on the virtio-mmio
transport (QEMU's `-drive if=none,id=hd0,file=root.img,format=raw -device
virtio-blk-device,drive=hd0 -append "root=/dev/vda rw console=ttyAMA0"`).

The disk is an ext2 image built here (mkfs.ext2 -d, no root needed) from the busybox of
images/linux/out/initramfs.cpio.gz, a data file and an /sbin/init that prints a marker,
/proc/partitions, /sys/block/vda/size and the data file's md5sum, writes /written.txt,
syncs and powers off.  Debian's kernel has virtio_mmio, virtio_blk and ext4 as modules,
so the boot's -initrd is fetch.sh's initramfs-vda.cpio.gz: it loads them and switch_roots
into /dev/vda (images/linux/init-vda).  One boot per configuration, shared by its
assertions; without the kernel (no network for apt) or e2fsprogs the tests skip with the
reason, and fail with it in CI."""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.test_linux import LINUX_DIR, MAX_INSNS, ROOT, TIMEOUT_S
from tests.tools import console_section, need

KERNEL = os.path.join(LINUX_DIR, "vmlinuz")
BUSYBOX_INITRD = os.path.join(LINUX_DIR, "initramfs.cpio.gz")
VDA_INITRD = os.path.join(LINUX_DIR, "initramfs-vda.cpio.gz")
CONFIGS = {"gicv2-nvhe": (2, 2, "nvhe"), "gicv3-vhe": (3, 1, "vhe")}     # GIC, vCPUs, --hyp-mode
DISK_BYTES = 8 << 20
WRITTEN = "written by the guest on /dev/vda"
INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "armvirt: disk root reached"
echo "==partitions=="; cat /proc/partitions
echo "==size=="; cat /sys/block/vda/size
echo "==md5=="; md5sum /etc/data.bin
echo "{WRITTEN}" > /written.txt
sync
echo "==end=="
poweroff -f
"""


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/sbin:/usr/sbin")


def _busybox_from(initrd: str) -> bytes:
    """bin/busybox out of the newc archive images/linux/mkinitramfs.py wrote."""
    data, pos = gzip.decompress(open(initrd, "rb").read()), 0
    while data[pos:pos + 6] == b"070701":
        f = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = f[6], f[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        start = pos + 110 + namesize
        start += -start % 4
        if name == "bin/busybox":
            return data[start:start + size]
        pos = start + size + (-(start + size) % 4)
    raise AssertionError(f"{initrd}: no bin/busybox in the archive")


def _make_disk(path, tmp) -> str:
    """The ext2 root file system; returns the md5 of its data file."""
    root = tmp / "rootfs"
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "bin" / "busybox").write_bytes(_busybox_from(BUSYBOX_INITRD))
    (root / "bin" / "busybox").chmod(0o755)
    (root / "sbin" / "init").write_text(INIT)
    (root / "sbin" / "init").chmod(0o755)
    data = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(4096))   # 128 KiB
    (root / "etc" / "data.bin").write_bytes(data)
    subprocess.run([_tool("mkfs.ext2"), "-q", "-F", "-d", str(root), "-E", "root_owner=0:0", str(path),
                    f"{DISK_BYTES >> 10}k"], check=True, capture_output=True)
    return hashlib.md5(data).hexdigest()


def _boot(name: str, tmp) -> dict:
    gic, smp, mode = CONFIGS[name]
    disk = tmp / f"root-{name}.img"
    md5 = _make_disk(disk, tmp)
    argv = [sys.executable, "-m", "armvirt", "run", "-M", f"virt,gic-version={gic}", "-smp", str(smp),
            "--hyp-mode", mode, "-m", "256M", "-kernel", KERNEL, "-initrd", VDA_INITRD,
            "-drive", f"if=none,id=hd0,file={disk},format=raw", "-device", "virtio-blk-device,drive=hd0",
            "-append", "root=/dev/vda rw console=ttyAMA0", "-d", "unimp,guest_errors",
            "--max-insns", str(MAX_INSNS)]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT)
    cat = subprocess.run([_tool("debugfs"), "-R", "cat /written.txt", str(disk)], capture_output=True, text=True)
    return {"argv": argv, "rc": r.returncode, "stdout": r.stdout.replace("\r", ""), "stderr": r.stderr,
            "md5": md5, "disk_bytes": os.path.getsize(disk), "written": cat.stdout}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def vblk(request, tmp_path_factory):
    missing = [p for p in (KERNEL, BUSYBOX_INITRD, VDA_INITRD) if not os.path.isfile(p)]
    need(not missing, f"{missing[0] if missing else ''} missing: run images/linux/fetch.sh "
                      f"(it needs apt and the network)")
    need(_tool("mkfs.ext2") is not None and _tool("debugfs") is not None,
         "mkfs.ext2 and debugfs missing: apt-get install e2fsprogs")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if hasattr(request.config, "workerinput") else base
    record = shared / f"linux-vblk-{request.param}.json"
    with open(shared / f"linux-vblk-{request.param}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            tmp = shared / f"vblk-{request.param}"
            tmp.mkdir(exist_ok=True)
            record.write_text(json.dumps(_boot(request.param, tmp)))
    run = json.loads(record.read_text())
    run["name"] = request.param
    return run


def _answer(run: dict, key: str) -> list[str]:
    """What the disk's init printed after its =={key}== marker, up to the next marker,
    without the kernel's own log lines."""
    section = console_section(run, key, lambda line: line.startswith("=="), f"=={key}==")
    return [l for l in section if not l.startswith("[")]


def test_root_on_vda_and_power_off(vblk):
    out = vblk["stdout"]
    assert vblk["rc"] == 0, f"{vblk['name']}: expected exit code 0, got {vblk['rc']}; stderr tail: " \
                            f"{vblk['stderr'][-1500:]}\nconsole tail: {out[-3000:]}"
    for want in ("virtio_blk virtio0: [vda]", "armvirt: mounting /dev/vda (rw)", "armvirt: disk root reached"):
        assert want in out, f"{vblk['name']}: expected {want!r} in the console; tail:\n{out[-3000:]}"
    logged = [l for l in vblk["stderr"].splitlines() if l.startswith(("[unimp]", "[guest_errors]"))]
    assert not logged and "Traceback" not in vblk["stderr"], \
        f"{vblk['name']}: expected no unimp/guest_errors lines or traceback, got {logged[:10]} {vblk['stderr'][-2000:]}"


def test_disk_size_is_the_image_size(vblk):
    want = vblk["disk_bytes"] // 512
    got = _answer(vblk, "size")
    assert got == [str(want)], f"{vblk['name']}: /sys/block/vda/size expected [{want!r}], got {got}"
    part = [l.split() for l in _answer(vblk, "partitions") if l.strip().endswith("vda")]
    assert part and part[0][2] == str(want // 2), \
        f"{vblk['name']}: /proc/partitions vda expected {want // 2} 1K-blocks, got {part}"


def test_read_data_matches(vblk):
    got = _answer(vblk, "md5")
    assert got and got[0].split()[0] == vblk["md5"], \
        f"{vblk['name']}: md5sum /etc/data.bin expected {vblk['md5']}, got {got}"


def test_guest_write_is_in_the_image(vblk):
    assert vblk["written"].strip() == WRITTEN, \
        f"{vblk['name']}: /written.txt in the image after the run expected {WRITTEN!r}, got {vblk['written']!r}"
