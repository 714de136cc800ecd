#!/usr/bin/env python3
"""Build a busybox initramfs: a gzip'd cpio archive in the "newc" format (Linux
Documentation/driver-api/early-userspace/buffer-format.rst), written directly so
that /dev/console can be a character device without root, and so that the same
inputs give the same bytes (every mtime 0, uid/gid 0, gzip mtime 0).

    mkinitramfs.py --busybox BUSYBOX --init INIT -o initramfs.cpio.gz
    mkinitramfs.py --busybox BUSYBOX --init INIT --file SRC=lib/modules/x.ko ... -o initramfs-vda.cpio.gz

`--file SRC=DEST` (repeatable) adds a regular file (mode 0644) at DEST, after the
others, its directories created as needed; without it the archive is what it always was.
"""
from __future__ import annotations

import argparse
import gzip
import stat
import sys

DIRS = ("bin", "dev", "etc", "proc", "sys", "tmp", "root")
CONSOLE = ("dev/console", 5, 1)          # Documentation/admin-guide/devices.txt: 5,1 = /dev/console


def _entry(ino: int, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    name_b = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1 if not stat.S_ISDIR(mode) else 2, 0, len(data), 0, 0, rdev[0], rdev[1],
              len(name_b), 0)
    hdr = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
    out = hdr + name_b
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def build(busybox: bytes, init: bytes, files: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    ino = iter(range(1, 100000))
    out = [_entry(next(ino), d, stat.S_IFDIR | 0o755) for d in DIRS]
    name, major, minor = CONSOLE
    out.append(_entry(next(ino), name, stat.S_IFCHR | 0o600, rdev=(major, minor)))
    out.append(_entry(next(ino), "bin/busybox", stat.S_IFREG | 0o755, busybox))
    out.append(_entry(next(ino), "init", stat.S_IFREG | 0o755, init))
    made = set(DIRS)
    for dest, data in files:
        parts = dest.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                made.add(d)
                out.append(_entry(next(ino), d, stat.S_IFDIR | 0o755))
        out.append(_entry(next(ino), "/".join(parts), stat.S_IFREG | 0o644, data))
    out.append(_entry(0, "TRAILER!!!", 0))
    archive = b"".join(out)
    return archive + b"\0" * (-len(archive) % 512)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busybox", required=True, help="a static AArch64 busybox")
    ap.add_argument("--init", required=True, help="the /init script")
    ap.add_argument("--file", action="append", default=[], metavar="SRC=DEST",
                    help="add the file SRC at DEST in the archive (repeatable)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    files = []
    for spec in a.file:
        src, eq, dest = spec.partition("=")
        if not eq or not dest.strip("/"):
            sys.exit(f"mkinitramfs: --file {spec}: expected SRC=DEST")
        with open(src, "rb") as f:
            files.append((dest, f.read()))
    with open(a.busybox, "rb") as f:
        busybox = f.read()
    if busybox[:4] != b"\x7fELF" or busybox[18:20] != b"\xb7\x00":
        sys.exit(f"mkinitramfs: {a.busybox}: not an AArch64 ELF executable")
    with open(a.init, "rb") as f:
        init = f.read()
    with open(a.output, "wb") as f:
        f.write(gzip.compress(build(busybox, init, tuple(files)), mtime=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
