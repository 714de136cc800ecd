"""Kernel loader: ELF files are assembled here with struct, no cross toolchain needed."""

import gzip
import os
import struct
from pathlib import Path

import pytest

from engine import layout
from armvirt.loader import BSS_STACK_ROOM, BadImage, KernelImage, Segment, load_kernel

RAM_BASE, RAM_SIZE = layout.RAM_BASE, 128 * 1024**2
RAM_END = RAM_BASE + RAM_SIZE
EM_AARCH64, EM_X86_64 = 183, 62
ET_EXEC, ET_DYN = 2, 3
PF_X, PF_W, PF_R = 1, 2, 4
EHDR, PHDR = 64, 56

CODE = bytes.fromhex("1f2003d5") * 4 + bytes.fromhex("00000014")   # nop x4; b .


def elf(segs: list[tuple[int, bytes, int, int]], entry: int, *, machine: int = EM_AARCH64,
        etype: int = ET_EXEC, ei_class: int = 2, ei_data: int = 1, vaddrs: list[int] | None = None) -> bytes:
    """ELF64 LE with one PT_LOAD per (paddr, data, memsz, flags); data follows the headers."""
    off = EHDR + PHDR * len(segs)
    ident = b"\x7fELF" + bytes([ei_class, ei_data, 1, 0]) + bytes(8)
    out = ident + struct.pack("<HHIQQQIHHHHHH", etype, machine, 1, entry, EHDR, 0, 0,
                              EHDR, PHDR, len(segs), 0, 0, 0)
    body = b""
    for i, (paddr, data, memsz, flags) in enumerate(segs):
        vaddr = vaddrs[i] if vaddrs else paddr
        out += struct.pack("<IIQQQQQQ", 1, flags, off + len(body), vaddr, paddr, len(data), memsz, 0x1000)
        body += data
    return out + body


def good_elf() -> bytes:
    return elf([(RAM_BASE + 0x8_0000, CODE, len(CODE), PF_R | PF_X),
                (RAM_BASE + 0x9_0000, b"\x11" * 16, 0x100, PF_R | PF_W)], RAM_BASE + 0x8_0000)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def load(path: str, **kw) -> KernelImage:
    return load_kernel(path, RAM_BASE, RAM_SIZE, **kw)


def refused(path: str, match: str, **kw) -> str:
    with pytest.raises(BadImage) as ei:
        load(path, **kw)
    msg = str(ei.value)
    assert match in msg, f"expected message containing {match!r}, got {msg!r}"
    assert os.path.basename(path) in msg, f"expected the file name in the message, got {msg!r}"
    assert "\n" not in msg, f"expected a one-line message, got {msg!r}"
    return msg


def test_good_elf(tmp_path: Path) -> None:
    k = load(write(tmp_path, "k.elf", good_elf()))
    assert k.kind == "elf", f"expected kind 'elf', got {k.kind!r}"
    assert k.entry == RAM_BASE + 0x8_0000, f"expected entry {RAM_BASE + 0x8_0000:#x}, got {k.entry:#x}"
    want = (Segment(RAM_BASE + 0x8_0000, CODE, len(CODE)), Segment(RAM_BASE + 0x9_0000, b"\x11" * 16, 0x100))
    assert k.segments == want, f"expected {want}, got {k.segments}"


def test_elf_paddr_zero_falls_back_to_vaddr(tmp_path: Path) -> None:
    a = RAM_BASE + 0x10_0000
    k = load(write(tmp_path, "k.elf", elf([(0, CODE, len(CODE), PF_R | PF_X)], a, vaddrs=[a])))
    got = (k.segments[0].addr, k.entry)
    assert got == (a, a), f"expected (addr, entry) {(hex(a), hex(a))}, got {tuple(map(hex, got))}"


def test_elf_entry_translated_from_vaddr(tmp_path: Path) -> None:
    va, pa = 0xFFFF_0000_0000_0000, RAM_BASE + 0x20_0000
    k = load(write(tmp_path, "k.elf", elf([(pa, CODE, len(CODE), PF_R | PF_X)], va + 4, vaddrs=[va])))
    assert k.entry == pa + 4, f"expected entry {pa + 4:#x}, got {k.entry:#x}"


@pytest.mark.parametrize("name, data, match", [
    ("x86.elf", elf([(RAM_BASE, CODE, len(CODE), PF_X)], RAM_BASE, machine=EM_X86_64), "x86-64 ELF, expected AArch64"),
    ("c32.elf", elf([(RAM_BASE, CODE, len(CODE), PF_X)], RAM_BASE, ei_class=1), "32-bit ELF"),
    ("be.elf", elf([(RAM_BASE, CODE, len(CODE), PF_X)], RAM_BASE, ei_data=2), "big-endian"),
    ("dyn.elf", elf([(RAM_BASE, CODE, len(CODE), PF_X)], RAM_BASE, etype=ET_DYN), "ET_DYN"),
    ("rel.elf", elf([(RAM_BASE, CODE, len(CODE), PF_X)], RAM_BASE, etype=1), "ET_REL"),
    ("noload.elf", elf([], RAM_BASE), "no PT_LOAD"),
    ("trunc.elf", good_elf()[:-8], "truncated"),
    ("trunc_ph.elf", good_elf()[:EHDR + 20], "truncated: program headers"),
    ("odd.elf", elf([], RAM_BASE, machine=0x7777), "e_machine 30583 ELF, expected AArch64"),
    ("trunc_hdr.elf", good_elf()[:40], "truncated ELF header"),
    ("low.elf", elf([(0x1000, CODE, len(CODE), PF_X)], 0x1000),
     f"[0x1000, 0x1014) is outside RAM [{RAM_BASE:#x}, {RAM_END:#x})"),
    ("high.elf", elf([(RAM_END - 8, CODE, len(CODE), PF_X)], RAM_END - 8), "outside RAM"),
    ("entry.elf", elf([(RAM_BASE, CODE, len(CODE), PF_X)], RAM_BASE + 0x1000), "entry point 0x40001000"),
    ("entry_nx.elf", elf([(RAM_BASE, CODE, len(CODE), PF_R)], RAM_BASE), "not inside an executable segment"),
    ("overlap.elf", elf([(RAM_BASE, CODE, 0x100, PF_X), (RAM_BASE + 0x80, CODE, 0x100, PF_R)], RAM_BASE),
     f"overlapping segments [{RAM_BASE:#x}, {RAM_BASE + 0x100:#x}) and [{RAM_BASE + 0x80:#x}"),
    ("empty.elf", b"", "empty file"),
])
def test_bad_files(tmp_path: Path, name: str, data: bytes, match: str) -> None:
    refused(write(tmp_path, name, data), match)


def test_missing_file(tmp_path: Path) -> None:
    refused(str(tmp_path / "nope.elf"), "no such file")


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "dir.elf"
    d.mkdir()
    refused(str(d), "cannot read")


def image(text_offset: int, image_size: int, flags: int = 0, magic: bytes = b"ARM\x64") -> bytes:
    hdr = struct.pack("<IIQQQQQQ4sI", 0x91005A4D, 0x14000000, text_offset, image_size, flags, 0, 0, 0, magic, 0)
    return hdr + CODE


def test_arm64_image(tmp_path: Path) -> None:
    data = image(0x20_0000, 0x1_0000, flags=0xA)
    k = load(write(tmp_path, "Image", data))
    want = (RAM_BASE + 0x20_0000, (Segment(RAM_BASE + 0x20_0000, data, 0x1_0000),))
    got = (k.entry, k.segments)
    assert k.kind == "image", f"expected kind 'image', got {k.kind!r}"
    assert got == want, f"expected {want}, got {got}"
    assert k.footprint_end == RAM_BASE + 0x21_0000, \
        f"expected footprint end {RAM_BASE + 0x21_0000:#x} (image_size), got {k.footprint_end:#x}"


def test_arm64_image_text_offset_zero_goes_2mib_up(tmp_path: Path) -> None:
    """Debian's kernel has text_offset 0: QEMU loads it at RAM base + 2 MiB (above its boot stub)."""
    data = image(0, 0x30_0000)
    k = load(write(tmp_path, "vmlinuz", data))
    want = (RAM_BASE + 0x20_0000, RAM_BASE + 0x50_0000)
    got = (k.entry, k.footprint_end)
    assert got == want, f"expected (entry, footprint end) {tuple(map(hex, want))}, got {tuple(map(hex, got))}"


def test_arm64_image_legacy_zero_size(tmp_path: Path) -> None:
    data = image(0x1234, 0)     # image_size 0: text_offset ignored, 0x80000 assumed
    k = load(write(tmp_path, "Image", data))
    want = RAM_BASE + layout.KERNEL_TEXT_OFFSET
    assert k.entry == want, f"expected entry {want:#x}, got {k.entry:#x}"


def test_gzipped_image_is_unpacked(tmp_path: Path) -> None:
    data = image(0, 0x1_0000)
    k = load(write(tmp_path, "Image.gz", gzip.compress(data, mtime=0)))
    got = (k.kind, k.entry, k.segments[0].data)
    want = ("image", RAM_BASE + 0x20_0000, data)
    assert got == want, f"expected {want[:2]} with the decompressed bytes, got {got[:2]} ({len(got[2])} bytes)"


def zboot(payload: bytes, comp: bytes = b"gzip") -> bytes:
    off = 0x40
    hdr = struct.pack("<2s2x4sII8x32s", b"MZ", b"zimg", off, len(payload), comp)
    return hdr.ljust(off, b"\0") + payload


def test_efi_zboot_image_is_unpacked(tmp_path: Path) -> None:
    data = image(0, 0x1_0000)
    k = load(write(tmp_path, "vmlinuz.efi", zboot(gzip.compress(data, mtime=0))))
    got = (k.kind, k.segments[0].data == data)
    assert got == ("image", True), f"expected the zboot payload loaded as an Image, got {got}"


def test_efi_zboot_other_compression_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, "vmlinuz.efi", zboot(b"\x28\xb5\x2f\xfd" * 8, b"zstd")), "'zstd'")


def test_corrupt_gzip_loads_raw(tmp_path: Path) -> None:
    """QEMU: a file that does not gunzip is loaded as it is."""
    data = b"\x1f\x8b\x08\x00" + CODE
    k = load(write(tmp_path, "fw.gz", data))
    got = (k.kind, k.segments[0].data)
    assert got == ("raw", data), f"expected the file loaded raw, got {got}"


@pytest.mark.parametrize("data, match, kw", [
    (image(0, RAM_SIZE + 1), "too big for RAM", {}),
    (image(0, 0x1000, flags=1), "big-endian", {}),
    (image(0, 0x1000, magic=b"XXXX"), "bad arm64 Image header", dict(kind="image")),
    (b"ARM\x64", "bad arm64 Image header", dict(kind="image")),
])
def test_bad_image(tmp_path: Path, data: bytes, match: str, kw: dict) -> None:
    refused(write(tmp_path, "Image", data), match, **kw)


@pytest.mark.parametrize("name", ["fw.bin", "fw.IMG", "firmware", "guest.elf.txt", "random.dat"])
def test_raw_whatever_the_name(tmp_path: Path, name: str) -> None:
    data = CODE if name != "random.dat" else bytes(range(7, 256)) * 4
    k = load(write(tmp_path, name, data))
    a = RAM_BASE + layout.KERNEL_TEXT_OFFSET
    want = ("raw", a, (Segment(a, data, len(data)),))
    got = (k.kind, k.entry, k.segments)
    assert got == want, f"expected {want}, got {got}"


def test_raw_footprint_leaves_room_for_bss_and_stack(tmp_path: Path) -> None:
    k = load(write(tmp_path, "fw.bin", bytes(0x20_0001)))     # ends just past RAM base + 2.5 MiB
    want = RAM_BASE + 0x40_0000 + BSS_STACK_ROOM                # rounded up to 4 MiB, plus the room
    assert k.footprint_end == want, f"expected footprint end {want:#x}, got {k.footprint_end:#x}"


def test_elf_footprint_from_its_highest_segment(tmp_path: Path) -> None:
    k = load(write(tmp_path, "k.elf", good_elf()))            # segments end at RAM base + 0x90100
    want = RAM_BASE + 0x20_0000 + BSS_STACK_ROOM
    assert k.footprint_end == want, f"expected footprint end {want:#x}, got {k.footprint_end:#x}"


def test_raw_too_big(tmp_path: Path) -> None:
    small = 0x10_0000       # 1 MiB of RAM cannot hold 0x80000 + 0x80001 bytes
    p = write(tmp_path, "big.bin", bytes(0x8_0001))
    with pytest.raises(BadImage, match="too big for RAM"):
        load_kernel(p, RAM_BASE, small)


def test_forced_kind_mismatch(tmp_path: Path) -> None:
    refused(write(tmp_path, "fw.bin", CODE), "ELF", kind="elf")
    refused(write(tmp_path, "k.elf", good_elf()), "unknown kernel kind", kind="zimage")


def test_elf_wins_over_bin_suffix(tmp_path: Path) -> None:
    k = load(write(tmp_path, "k.bin", good_elf()))
    assert k.kind == "elf", f"expected kind 'elf' from content, got {k.kind!r}"
