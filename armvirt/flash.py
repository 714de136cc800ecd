"""The `virt` board's flash (QEMU hw/arm/virt.c virt_flash_create / virt_flash_map /
virt_firmware_init): two CFI01 banks of 64 MiB at 0x0 and 0x04000000, fitted (and in
the DTB's flash@0 node) when the command line gives either of them an image.  QEMU
fits them always; without an image they hold zeros and nothing else, and armvirt keeps
the board of its bare-metal images as it was (no DTB node for their runtime to walk,
accesses to 0x0 abort), so their modeled cycles do not move.

What fills them:
  * `-bios FILE`: bank 0 gets the file's bytes, the rest zeros; the guest may program
    and erase it (QEMU's bank has no block backend, so it is writable), nothing is
    written back, and every system reset loads the file again (QEMU's ROM blob reset).
  * `-drive if=pflash,format=raw,file=F[,unit=N][,readonly=on]` (and `-pflash F`, the
    next free unit): bank N is the file, which must be exactly 64 MiB (QEMU's
    blk_check_size_and_read_all); its guest writes go back to the file, unless
    readonly=on, where programming and erasing fail with the status error bits.
  * nothing for a bank, when the other has an image: zeros, writable, not kept.

The guest sees each bank as ROM while it is in read-array mode: a read-only memory slot
(KVM_MEM_READONLY) backed by host memory that holds the bank's array, so reads and
instruction fetches run at memory speed; a write exits to the device model
(armvirt.devices.cfi01), which deletes the slot while it answers commands and restores
it when the bank returns to read array (QEMU's memory_region_rom_device_set_romd).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from armvirt.boot import BootError
from armvirt.devices.cfi01 import Cfi01Flash
from engine import layout

BANKS = 2
BANK_BASES = tuple(layout.FLASH_BASE + i * layout.FLASH_BANK_SIZE for i in range(BANKS))
IDS = (0x89, 0x18)                 # QEMU virt: id0 Intel, id1 0x18 (id2/id3 0: unused with device-width)


@dataclass(frozen=True)
class PflashDrive:
    """-drive if=pflash,format=raw,file=F[,unit=N][,readonly=on]."""
    file: str
    unit: int
    readonly: bool = False

    @property
    def option(self) -> str:
        return f"-drive if=pflash,format=raw,unit={self.unit},file={self.file}" + \
            (",readonly=on" if self.readonly else "")


@dataclass
class BankImage:
    """What one bank holds at power-on and where its writes go."""
    data: bytes = b""                 # the first bytes of the array (the rest zeros)
    readonly: bool = False            # program/erase fail (-drive ...,readonly=on)
    drive: PflashDrive | None = None  # write back to this file (writable -drive)
    reload_on_reset: bool = False     # -bios: the file again on every system reset


def fitted(bios: str | None, drives: tuple[PflashDrive, ...]) -> bool:
    """The banks are on the board: some bank was given an image."""
    return bios is not None or bool(drives)


def firmware_boot(bios: str | None, drives: tuple[PflashDrive, ...]) -> bool:
    """QEMU virt_firmware_init: firmware boot when bank 0 has contents (-bios or unit 0)."""
    return bios is not None or any(d.unit == 0 for d in drives)


def load_images(bios: str | None, drives: tuple[PflashDrive, ...]) -> list[BankImage]:
    """The banks' contents, checked as QEMU checks them (one line each, exit code 2)."""
    banks = [BankImage() for _ in range(BANKS)]
    seen: dict[int, PflashDrive] = {}
    for d in drives:
        if not 0 <= d.unit < BANKS:
            raise BootError(f"{d.option}: machine type does not support if=pflash,bus=0,unit={d.unit}")
        if d.unit in seen:
            raise BootError(f"{d.option}: drive with bus=0, unit={d.unit} exists")
        seen[d.unit] = d
        banks[d.unit] = BankImage(_read_drive(d), d.readonly, None if d.readonly else d)
    if bios is not None:
        if 0 in seen:
            raise BootError("The contents of the first flash device may be specified with -bios or with "
                            "-drive if=pflash... but you cannot use both options at once")
        try:
            with open(bios, "rb") as f:
                data = f.read(layout.FLASH_BANK_SIZE + 1)
        except FileNotFoundError:
            raise BootError(f"Could not find ROM image '{bios}'") from None
        except OSError as e:
            raise BootError(f"Could not load ROM image '{bios}': {e.strerror or e}") from None
        if len(data) > layout.FLASH_BANK_SIZE:
            raise BootError(f"Could not load ROM image '{bios}' (larger than the 64 MiB flash bank)")
        banks[0] = BankImage(data, reload_on_reset=True)
    return banks


def _read_drive(d: PflashDrive) -> bytes:
    try:
        with open(d.file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != layout.FLASH_BANK_SIZE:
                # QEMU's raw driver reports the length in whole 512-byte sectors
                raise BootError(f"{d.option}: device requires {layout.FLASH_BANK_SIZE} bytes, block backend "
                                f"provides {-(-size // 512) * 512} bytes (pad the file: truncate -s 64M FILE)")
            data = f.read()
        if not d.readonly and not os.access(d.file, os.W_OK):
            raise BootError(f"{d.option}: Could not open '{d.file}': Permission denied (or give readonly=on)")
    except FileNotFoundError:
        raise BootError(f"{d.option}: Could not open '{d.file}': No such file or directory") from None
    except IsADirectoryError:
        raise BootError(f"{d.option}: Could not open '{d.file}': Is a directory") from None
    except OSError as e:
        raise BootError(f"{d.option}: Could not open '{d.file}': {e.strerror or e}") from None
    return data


class _WriteBack:
    """A writable -drive's file: changed ranges of the bank are written through."""

    def __init__(self, path: str, storage):
        self.path, self.storage = path, storage

    def __call__(self, offset: int, length: int) -> None:
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(self.storage[offset:offset + length])


class VirtFlash:
    """The two banks on a VM: a read-only memory slot and a CFI01 model each, the model
    on the VMM's device bus."""

    def __init__(self, vm, bus, images: list[BankImage], thp: bool = True, log=lambda msg: None):
        self.vm, self.images = vm, images
        self.slots, self.banks = [], []
        for i, (base, img) in enumerate(zip(BANK_BASES, images)):
            slot = vm.add_rom(base, layout.FLASH_BANK_SIZE, thp=thp)
            slot.buf[:len(img.data)] = img.data
            persist = _WriteBack(img.drive.file, slot.buf) if img.drive is not None else None
            bank = Cfi01Flash(f"virt.flash{i}", slot.buf, sector_len=layout.FLASH_SECTOR_SIZE,
                              bank_width=layout.FLASH_BANK_WIDTH, device_width=layout.FLASH_DEVICE_WIDTH,
                              ids=IDS, readonly=img.readonly, romd=self._romd(slot), persist=persist, log=log)
            bus.register(base, layout.FLASH_BANK_SIZE, bank)
            self.slots.append(slot)
            self.banks.append(bank)

    def _romd(self, slot):
        left_at = [0]                 # the bank's stores when it left ROM mode

        def romd(on: bool) -> None:
            bank = self.banks[self.slots.index(slot)]
            if on:
                self.vm.restore_slot(slot, changed=bank.stores != left_at[0])
            else:
                left_at[0] = bank.stores
                self.vm.delete_slot(slot)
        return romd

    def reset(self, cpus) -> None:
        """System reset: each bank back in read-array mode; a -bios bank reloaded, and the
        translated code dropped (host writes do not invalidate it)."""
        for bank, slot, img in zip(self.banks, self.slots, self.images):
            bank.reset()
            if img.reload_on_reset and bank.dirty:
                slot.buf[:] = bytes(len(slot.buf))
                slot.buf[:len(img.data)] = img.data
                bank.dirty = False
                for cpu in cpus:
                    cpu.drop_code()           # host writes leave translated code in place
