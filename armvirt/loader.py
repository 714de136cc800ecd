"""Kernel image loading as QEMU's hw/arm/boot.c does for `-kernel` on an AArch64 CPU:
an ELF64 AArch64 executable (by its magic), else an arm64 Linux `Image` (the "ARM\\x64"
magic at 0x38; gzip-compressed or an EFI zboot image unpacked first, as QEMU's
load_aarch64_image does), else a raw binary whatever its name, loaded at RAM base +
0x80000 and entered at its first byte.

The result is a list of physical segments to copy into guest RAM, an entry point and
the image's footprint (what nothing else may overlap: see `KernelImage.footprint_end`);
nothing here touches guest memory. Every failure is a one-line `BadImage` naming the
file, because the usual cause is simply the wrong file on the command line.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from engine.layout import KERNEL_TEXT_OFFSET

KINDS = ("elf", "image", "raw")

_ELF_MAGIC = b"\x7fELF"
_IMAGE_MAGIC_OFF, _IMAGE_MAGIC = 0x38, b"ARM\x64"
_IMAGE_HDR = struct.Struct("<II QQQ QQQ 4s I")   # Documentation/arch/arm64/booting.rst
_PF_X = 1
_GZIP_MAGIC = b"\x1f\x8b"
_GUNZIP_MAX = 256 << 20          # QEMU's LOAD_IMAGE_MAX_GUNZIP_BYTES
_ZBOOT_HDR = struct.Struct("<2s2x4sII8x32s")   # drivers/firmware/efi/libstub/zboot-header.S

MIB = 1 << 20
# QEMU writes its 4 KiB boot stub at RAM base, so an Image asking for a text_offset
# below that goes 2 MiB up (hw/arm/boot.c, BOOTLOADER_MAX_SIZE); armvirt sets the
# registers directly but places the Image where QEMU does, so addresses match.
_QEMU_BOOTLOADER_MAX = 0x1000
# A raw binary or ELF declares no bss/stack beyond its file or segments: reserve this
# much past its end (rounded up to 2 MiB) before anything else is placed (estimate:
# bare-metal runtimes keep stack and heap within a few hundred KiB of _end).
BSS_STACK_ROOM = 2 * MIB

# Friendly names for the machines people most often pass by mistake.
_MACHINES = {
    "EM_X86_64": "x86-64", "EM_386": "i386", "EM_ARM": "32-bit ARM",
    "EM_RISCV": "RISC-V", "EM_PPC64": "PowerPC64", "EM_MIPS": "MIPS", "EM_S390": "s390",
}


class BadImage(Exception):
    """The kernel file cannot be loaded; the message names the file and the reason."""


@dataclass(frozen=True)
class Segment:
    addr: int          # guest physical load address
    data: bytes        # file bytes; [addr + len(data), addr + memsz) is zero-filled
    memsz: int

    @property
    def end(self) -> int:
        return self.addr + self.memsz


def align_up(v: int, a: int) -> int:
    return (v + a - 1) & ~(a - 1)


@dataclass(frozen=True)
class KernelImage:
    kind: str                        # "elf", "image" or "raw"
    entry: int                       # guest physical entry point (MMU off)
    segments: tuple[Segment, ...]    # sorted by address, non-overlapping, inside RAM
    path: str
    image_size: int = 0              # Image: the header's image_size (covers its bss)

    @property
    def footprint_end(self) -> int:
        """First byte the image can never use: an Image's image_size past its load
        address (booting.rst: that much must be free for the kernel); for a raw binary
        or an ELF its end rounded up to 2 MiB plus BSS_STACK_ROOM, since a
        self-relocating or stack-below-bss program may use memory past its file."""
        end = max(s.end for s in self.segments)
        if self.kind == "image":
            return max(end, self.segments[0].addr + self.image_size)
        return align_up(end, 2 * MIB) + BSS_STACK_ROOM


def _r(a: int, b: int) -> str:
    return f"[{a:#x}, {b:#x})"


def load_kernel(path: str, ram_base: int, ram_size: int, kind: str | None = None) -> KernelImage:
    """Load `path`, detecting the format from its content unless `kind` forces one."""
    if kind is not None and kind not in KINDS:
        raise BadImage(f"{path}: unknown kernel kind {kind!r} (expected one of {', '.join(KINDS)})")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadImage(f"{path}: no such file") from None
    except OSError as e:
        raise BadImage(f"{path}: cannot read: {e.strerror or e}") from None
    if not data:
        raise BadImage(f"{path}: empty file")

    if kind is None and data[:4] != _ELF_MAGIC:
        data = _unpack(path, data)          # the bootloader's job on arm64 (QEMU does it)
    if kind is None:
        if data[:4] == _ELF_MAGIC:
            kind = "elf"
        elif data[_IMAGE_MAGIC_OFF:_IMAGE_MAGIC_OFF + 4] == _IMAGE_MAGIC:
            kind = "image"
        else:
            kind = "raw"                    # no signature: raw, whatever the file's name

    ram = (ram_base, ram_base + ram_size)
    image_size = 0
    if kind == "elf":
        entry, segs = _load_elf(path, data, ram)
    elif kind == "image":
        entry, segs, image_size = _load_image(path, data, ram)
    else:
        entry, segs = _load_flat(path, "raw binary", data, ram_base + KERNEL_TEXT_OFFSET, len(data), ram)
    return KernelImage(kind=kind, entry=entry, segments=segs, path=path, image_size=image_size)


def _gunzip(data: bytes) -> bytes | None:
    """One gzip member, at most _GUNZIP_MAX bytes out; None if it is not valid gzip."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(data, _GUNZIP_MAX)
    except zlib.error:
        return None
    if d.unconsumed_tail or not d.eof:
        return None                         # truncated, or larger than QEMU accepts
    return out


def _unpack(path: str, data: bytes) -> bytes:
    """QEMU load_aarch64_image: a gzip file is decompressed (if that fails the file is
    loaded as it is, raw); an EFI zboot image ("zimg" at 4) has its gzip payload unpacked."""
    if data[:2] == _GZIP_MAGIC:
        out = _gunzip(data)
        return data if out is None else out
    if len(data) >= _ZBOOT_HDR.size and data[:2] == b"MZ" and data[4:8] == b"zimg":
        _, _, off, size, comp = _ZBOOT_HDR.unpack_from(data)
        comp = comp.split(b"\0")[0].decode("ascii", "replace")
        if comp != "gzip":
            raise BadImage(f"{path}: EFI zboot image compressed with {comp!r}: only gzip is supported")
        out = _gunzip(data[off:off + size]) if off + size <= len(data) else None
        if out is None:
            raise BadImage(f"{path}: EFI zboot image: payload [{off:#x}, {off + size:#x}) is not valid gzip")
        return out
    return data


def _load_flat(path: str, what: str, data: bytes, addr: int, memsz: int,
               ram: tuple[int, int]) -> tuple[int, tuple[Segment, ...]]:
    """One segment at `addr`, entered at its first byte (Image and raw)."""
    if addr + memsz > ram[1]:
        raise BadImage(f"{path}: {what} {_r(addr, addr + memsz)} too big for RAM {_r(*ram)}")
    return addr, (Segment(addr, data, memsz),)


def _load_image(path: str, data: bytes, ram: tuple[int, int]) -> tuple[int, tuple[Segment, ...], int]:
    if len(data) < _IMAGE_HDR.size:
        raise BadImage(f"{path}: bad arm64 Image header: file is only {len(data)} bytes")
    (_, _, text_offset, image_size, flags, _, _, _, magic, _) = _IMAGE_HDR.unpack_from(data)
    if magic != _IMAGE_MAGIC:
        raise BadImage(f"{path}: bad arm64 Image header: magic {magic!r}, expected {_IMAGE_MAGIC!r}")
    if flags & 1:
        raise BadImage(f"{path}: bad arm64 Image header: big-endian kernel (flags bit 0), expected little-endian")
    if image_size == 0:
        # Pre-3.17 kernels: text_offset is unreliable, the documented default applies.
        text_offset, image_size = KERNEL_TEXT_OFFSET, len(data)
    elif text_offset < _QEMU_BOOTLOADER_MAX:
        text_offset += 2 * MIB          # a 2 MiB-aligned base above RAM base (booting.rst)
    # image_size covers BSS: reserve it so nothing else is placed there.
    size = max(image_size, len(data))
    entry, segs = _load_flat(path, "Image", data, ram[0] + text_offset, size, ram)
    return entry, segs, size


def _load_elf(path: str, data: bytes, ram: tuple[int, int]) -> tuple[int, tuple[Segment, ...]]:
    # e_ident is checked by hand: pyelftools happily parses any class/endianness.
    if data[:4] != _ELF_MAGIC:
        raise BadImage(f"{path}: not an ELF file (no \\x7fELF magic)")
    if len(data) < 64:
        raise BadImage(f"{path}: truncated ELF header ({len(data)} bytes, ELF64 needs 64)")
    if data[4] != 2:
        raise BadImage(f"{path}: {'32-bit' if data[4] == 1 else 'unknown-class'} ELF, expected ELFCLASS64")
    if data[5] != 1:
        raise BadImage(f"{path}: {'big-endian' if data[5] == 2 else 'unknown-endian'} ELF, expected little-endian")
    # pyelftools only for ELF images (a Linux Image or a raw binary starts without it).
    from elftools.common.exceptions import ELFError
    from elftools.construct import ConstructError
    from elftools.elf.elffile import ELFFile
    try:
        elf = ELFFile(io.BytesIO(data))
        machine, etype = elf["e_machine"], elf["e_type"]
        if machine != "EM_AARCH64":
            # pyelftools gives a name like "EM_X86_64", or a bare int when it has none.
            name = (f"e_machine {machine}" if isinstance(machine, int)
                    else _MACHINES.get(machine, machine.removeprefix("EM_")))
            raise BadImage(f"{path}: {name} ELF, expected AArch64")
        if etype == "ET_DYN":
            raise BadImage(f"{path}: position-independent ELF (ET_DYN) is not supported; link with -static -no-pie")
        if etype != "ET_EXEC":
            raise BadImage(f"{path}: ELF type {etype}, expected an executable (ET_EXEC)")
        entry = elf["e_entry"]
        ph_end = elf["e_phoff"] + elf["e_phnum"] * elf["e_phentsize"]
        if ph_end > len(data):
            raise BadImage(f"{path}: truncated: program headers {_r(elf['e_phoff'], ph_end)} "
                           f"past end of file ({len(data):#x} bytes)")
        loads = [s.header for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    except (ELFError, ConstructError, struct.error, ValueError, EOFError) as e:
        raise BadImage(f"{path}: truncated or corrupt ELF: {e}") from None
    if not loads:
        raise BadImage(f"{path}: ELF has no PT_LOAD segment")

    segs: list[tuple[Segment, int, bool]] = []   # (segment, p_vaddr, executable)
    for i, ph in enumerate(loads):
        off, filesz, memsz = ph["p_offset"], ph["p_filesz"], ph["p_memsz"]
        if filesz > memsz:
            raise BadImage(f"{path}: PT_LOAD {i} has p_filesz {filesz:#x} > p_memsz {memsz:#x}")
        if off + filesz > len(data):
            raise BadImage(f"{path}: truncated: PT_LOAD {i} file data {_r(off, off + filesz)} "
                           f"past end of file ({len(data):#x} bytes)")
        if memsz == 0:
            continue
        # The CPU starts with the MMU off, so physical addresses decide placement;
        # many linkers leave p_paddr 0 when no AT() is given, hence the fallback.
        addr, vaddr = ph["p_paddr"], ph["p_vaddr"]
        if addr == 0 and ram[0] <= vaddr and vaddr + memsz <= ram[1]:
            addr = vaddr
        if not (ram[0] <= addr and addr + memsz <= ram[1]):
            raise BadImage(f"{path}: PT_LOAD {i} {_r(addr, addr + memsz)} is outside RAM {_r(*ram)}")
        segs.append((Segment(addr, data[off:off + filesz], memsz), vaddr, bool(ph["p_flags"] & _PF_X)))
    if not segs:
        raise BadImage(f"{path}: ELF has no PT_LOAD segment with a non-zero size")

    segs.sort(key=lambda t: t[0].addr)
    for (a, _, _), (b, _, _) in zip(segs, segs[1:]):
        if a.end > b.addr:
            raise BadImage(f"{path}: overlapping segments {_r(a.addr, a.end)} and {_r(b.addr, b.end)}")

    # e_entry is virtual: translate through the executable segment holding it (as
    # QEMU's load_elf does), else accept it as already physical.
    phys = next((s.addr + entry - v for s, v, x in segs if x and v <= entry < v + s.memsz), None)
    if phys is None:
        phys = next((entry for s, _, x in segs if x and s.addr <= entry < s.end), None)
    if phys is None:
        ranges = ", ".join(_r(s.addr, s.end) for s, _, x in segs if x) or "none"
        raise BadImage(f"{path}: entry point {entry:#x} is not inside an executable segment "
                       f"(executable segments: {ranges})")
    return phys, tuple(s for s, _, _ in segs)
