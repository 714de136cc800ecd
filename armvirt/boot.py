"""The boot loader: what QEMU's hw/arm/boot.c does for a direct kernel boot
(arm_setup_direct_kernel_boot, arm_load_dtb), without the boot stub in RAM
(armvirt sets the entry registers itself, host_kernel.vcpu.Vcpu.reset).

Placement in RAM (QEMU's for a Linux boot, applied to every kind of image):

    RAM base
      + 0x80000 / 2 MiB + text_offset   kernel image (raw / ELF / Image)
      ...                               its footprint: Image image_size, or a raw
                                        binary's or ELF's end rounded up to 2 MiB
                                        plus BSS_STACK_ROOM
    initrd_start = page_align(max(RAM base + min(RAM / 2, 128 MiB), footprint end))
                                        -initrd, if any
    dtb = align_up(initrd end, 2 MiB)   the DTB (Linux maps it in a 2 MiB block)

so neither the initrd nor the DTB can be overwritten by an image that relocates
itself or puts its bss and stack past its file.

A firmware boot (`-bios`, `-drive if=pflash`: QEMU's arm_setup_firmware_boot) loads no
kernel: the DTB goes at RAM base, where the firmware looks for it (U-Boot's qemu-arm
board, EDK2's ArmVirtQemu), and the boot CPU starts at the flash's first byte, 0x0,
with every general-purpose register 0 (QEMU writes no boot stub and passes nothing).  QEMU loads an initrd only for
Linux-style images; armvirt loads it for an ELF too, so bare-metal programs can
read one (an environment, a disk image) through /chosen.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from armvirt import dtb as dtbmod
from armvirt.dtb import DtbConfig
from armvirt.loader import BadImage, KernelImage, align_up, load_kernel

MIB = 1 << 20
PAGE = 0x1000
INITRD_FLOOR = 128 * MIB          # QEMU: initrd at min(RAM / 2, 128 MiB) above RAM base at least
DTB_ALIGN = 2 * MIB               # QEMU for AArch64: early kernels map the DTB's 2 MiB block
FIRMWARE_ENTRY = 0x0              # the flash's first byte (the CPU's reset address)


class BootError(Exception):
    """An initrd or DTB that cannot be used, or no room in RAM: one line, exit code 2."""


@dataclass(frozen=True)
class BootPlan:
    image: KernelImage | None
    initrd: bytes | None
    initrd_start: int
    dtb: bytes
    dtb_addr: int
    firmware: bool = False          # -bios / pflash: enter the flash at 0x0, x0 = 0

    @property
    def entry(self) -> int:
        return FIRMWARE_ENTRY if self.firmware else self.image.entry

    @property
    def x0(self) -> int:
        """x0 at entry: the DTB for a kernel (booting.rst), nothing for firmware."""
        return 0 if self.firmware else self.dtb_addr

    @property
    def initrd_range(self) -> tuple[int, int] | None:
        if self.initrd is None:
            return None
        return self.initrd_start, self.initrd_start + len(self.initrd)

    def blobs(self) -> list[tuple[int, bytes, int]]:
        """(address, bytes, zeros after them) to write into RAM on power-on and reset,
        image first (a segment's bss is its zeros: not concatenated, the image is ~33 MB)."""
        out = [] if self.image is None else [(s.addr, s.data, s.memsz - len(s.data))
                                             for s in self.image.segments]
        if self.initrd:
            out.append((self.initrd_start, self.initrd, 0))
        out.append((self.dtb_addr, self.dtb, 0))
        return out


def read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise BootError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise BootError(f"{what} {path}: cannot read: {e.strerror or e}") from None


def initrd_address(ram_base: int, ram_size: int, image: KernelImage | None) -> int:
    start = ram_base + min(ram_size // 2, INITRD_FLOOR)
    if image is not None:
        start = max(start, image.footprint_end)
    return align_up(start, PAGE)


def prepare(cfg: DtbConfig, kernel: str | None, initrd: str | None = None,
            dtb: str | None = None, firmware: bool = False) -> BootPlan:
    """Load the kernel, place the initrd and the DTB above it, and build the DTB (or
    patch the user's `dtb` file as QEMU does: /memory, /chosen, /psci).  `firmware`:
    no kernel, the DTB at RAM base for the firmware in the flash."""
    if firmware:
        if kernel:
            raise BootError("-kernel with -bios/-drive if=pflash: QEMU hands the kernel to the firmware "
                            "through fw_cfg, which armvirt's board does not have (give one or the other)")
        if initrd:
            raise BootError("-initrd only allowed with -kernel option")
        if cfg.bootargs:
            raise BootError("-append only allowed with -kernel option")
        try:
            blob = dtbmod.patch_dtb(read_file(dtb, "-dtb"), cfg) if dtb else dtbmod.build_dtb(cfg)
        except dtbmod.DtbError as e:
            raise BootError(f"-dtb {dtb}: {e}" if dtb else str(e)) from None
        return BootPlan(None, None, 0, blob, cfg.ram_base, firmware=True)
    ram_base, ram_size = cfg.ram_base, cfg.ram_size
    ram_end = ram_base + ram_size
    image = load_kernel(kernel, ram_base, ram_size) if kernel else None
    data = read_file(initrd, "-initrd") if initrd else None
    start = initrd_address(ram_base, ram_size, image)
    rng = None
    if data is not None:
        if start + len(data) > ram_end:
            raise BootError(f"-initrd {initrd}: {len(data):#x} bytes do not fit in RAM after the kernel "
                            f"([{start:#x}, {ram_end:#x}) is free)")
        rng = (start, start + len(data))
    cfg = dataclasses.replace(cfg, initrd=rng)
    try:
        blob = dtbmod.patch_dtb(read_file(dtb, "-dtb"), cfg) if dtb else dtbmod.build_dtb(cfg)
    except dtbmod.DtbError as e:
        raise BootError(f"-dtb {dtb}: {e}" if dtb else str(e)) from None
    addr = align_up(start + (len(data) if data else 0), DTB_ALIGN)
    if image is not None and addr + len(blob) > ram_end:
        raise BootError(f"not enough space for the DTB ({len(blob):#x} bytes) after the kernel/initrd: "
                        f"it would start at {addr:#x}, RAM ends at {ram_end:#x}")
    return BootPlan(image, data, start, blob, addr)


__all__ = ["BadImage", "BootError", "BootPlan", "prepare", "initrd_address", "read_file"]
