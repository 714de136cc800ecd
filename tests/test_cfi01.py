"""The CFI01 flash model (armvirt/devices/cfi01.py) on its own: the command state machine,
the CFI query and identifier answers QEMU's pflash_cfi01 gives for the virt geometry,
program, erase and write-to-buffer, read-only banks, and the ROM-mode switch."""
import pytest

from armvirt.devices.cfi01 import Cfi01Flash, cfi_table
from engine import layout

SECTOR = layout.FLASH_SECTOR_SIZE
SIZE = 4 * SECTOR                          # a small bank of the virt geometry's sectors


def bank(readonly=False, size=SIZE, fill=0):
    romd, persisted, logged = [], [], []
    storage = bytearray([fill]) * size
    dev = Cfi01Flash("virt.flash0", storage, sector_len=SECTOR, bank_width=4, device_width=2,
                     ids=(0x89, 0x18), readonly=readonly, romd=romd.append,
                     persist=lambda off, n: persisted.append((off, n)), log=logged.append)
    return dev, storage, romd, persisted, logged


def check(got, want, what):
    assert got == want, f"{what}: expected {want:#x}, observed {got:#x}" if isinstance(want, int) \
        else f"{what}: expected {want!r}, observed {got!r}"


# QEMU pflash_cfi01_fill_cfi_table for virt's banks (64 MiB, 256 KiB sectors, width 4,
# device-width 2): each x16 part has 256 blocks of 128 KiB, 32 MiB.
QEMU_VIRT_CFI = {0x10: 0x51, 0x11: 0x52, 0x12: 0x59, 0x13: 0x01, 0x14: 0x00, 0x15: 0x31, 0x16: 0x00,
                 0x1B: 0x45, 0x1C: 0x55, 0x1F: 0x07, 0x20: 0x07, 0x21: 0x0A, 0x22: 0x00, 0x23: 0x04,
                 0x24: 0x04, 0x25: 0x04, 0x26: 0x00, 0x27: 0x19, 0x28: 0x02, 0x29: 0x00, 0x2A: 0x0B,
                 0x2B: 0x00, 0x2C: 0x01, 0x2D: 0xFF, 0x2E: 0x00, 0x2F: 0x00, 0x30: 0x02, 0x31: 0x50,
                 0x32: 0x52, 0x33: 0x49, 0x34: 0x31, 0x35: 0x30, 0x3F: 0x01}


def test_cfi_table_is_qemus_for_the_virt_geometry():
    t = cfi_table(SECTOR, layout.FLASH_BANK_SIZE // SECTOR, 4, 2)
    check(len(t), 0x52, "CFI table length")
    for off in range(len(t)):
        check(t[off], QEMU_VIRT_CFI.get(off, 0), f"CFI byte {off:#x}")


def test_cfi_query_reads_the_table_on_both_parts():
    dev, _, romd, _, _ = bank(size=layout.FLASH_BANK_SIZE)
    dev.write(0x55 * 4, 4, 0x98)                       # U-Boot's query address (word 0x55)
    check(romd, [False], "ROM mode left on the first command cycle")
    for word, want in ((0x10, ord("Q")), (0x11, ord("R")), (0x12, ord("Y")), (0x27, 0x19), (0x30, 0x02)):
        check(dev.read(word * 4, 4), want | want << 16, f"32-bit query read of word {word:#x}")
        check(dev.read(word * 4, 2), want, f"16-bit query read of word {word:#x}")
        check(dev.read(word * 4, 1), want, f"byte query read of word {word:#x}")
    check(dev.read(0x52 * 4, 4), 0, "past the table")
    check(dev.read(0x40, 8), (ord("R") | ord("R") << 16) << 32 | ord("Q") | ord("Q") << 16, "8-byte read")
    dev.write(0, 4, 0xF0)                              # the AMD reset: QEMU stays in query mode
    check(dev.read(0x40, 4), 0x00510051, "query mode after 0xF0")
    dev.write(0, 4, 0xFF)
    check(romd, [False, True], "read array restores ROM mode")


def test_read_identifier_and_status():
    dev, storage, romd, _, _ = bank()
    dev.write(0, 4, 0x90)
    check((dev.read(0, 4), dev.read(4, 4), dev.read(8, 4)), (0x00890089, 0x00180018, 0), "ID words 0, 1, 2")
    dev.write(0, 4, 0x70)
    check(dev.read(0, 4), 0x00800080, "status, 32-bit: SR.7 on both parts")
    check(dev.read(SECTOR + 2, 2), 0x0080, "status, 16-bit, anywhere in the bank")
    dev.write(0, 4, 0x50)                              # clear status: back to read array
    check(romd, [False, True], "ROM mode after clear status")
    check(dev.status, 0, "status register after 0x50")


def test_word_program_and_read_array_remap():
    dev, storage, romd, persisted, _ = bank()
    dev.write(0x100, 4, 0x40)
    dev.write(0x100, 4, 0xCAFEF00D)
    check(bytes(storage[0x100:0x104]), bytes.fromhex("0df0feca"), "programmed word (little-endian)")
    check(dev.read(0, 4), 0x00800080, "reads after a program return the status")
    check(romd, [False], "the bank stays out of ROM mode until read array")
    check(persisted, [(0, 512)], "the changed range goes back in 512-byte sectors")
    dev.write(0, 4, 0xFF)
    check(romd, [False, True], "read array re-maps the array")
    check(dev.read(0x100, 4), 0xCAFEF00D, "array read")


def test_block_erase_at_the_confirm_and_cancel():
    dev, storage, _, persisted, _ = bank(fill=0x5A)
    dev.write(SECTOR + 0x40, 4, 0x20)
    check(bytes(storage[SECTOR:SECTOR + 4]), b"\x5a" * 4, "nothing erased before the confirm")
    dev.write(SECTOR + 0x40, 4, 0xD0)
    check(storage[SECTOR:2 * SECTOR] == b"\xff" * SECTOR, True, "the addressed sector erased")
    check((storage[SECTOR - 1], storage[2 * SECTOR]), (0x5A, 0x5A), "neighbouring sectors untouched")
    check(persisted, [(SECTOR, SECTOR)], "erased sector persisted")
    check(dev.read(0, 4) & 0xFF, 0x80, "status ready after the erase")
    dev.write(0, 4, 0x20)
    dev.write(0, 4, 0xFF)                              # cancel: read array, nothing erased
    check((dev.romd, storage[0]), (True, 0x5A), "(ROM mode, first byte) after a cancelled erase")


def test_write_to_buffer():
    dev, storage, _, persisted, _ = bank()
    dev.write(0x800, 4, 0xE8)
    dev.write(0x800, 4, 0x00030003)                    # 4 words (count - 1 on each part)
    for i in range(4):
        dev.write(0x800 + 4 * i, 4, 0x11111111 * (i + 1))
    dev.write(0x800, 4, 0xD0)
    check(bytes(storage[0x800:0x810]), b"".join((0x11111111 * (i + 1)).to_bytes(4, "little") for i in range(4)),
          "buffer contents")
    check(persisted, [(0, dev.writeblock_size)], "the write block flushed once, as QEMU")
    check(dev.writeblock_size, 4096, "write block: 2 KiB per part, two parts")


def test_read_only_bank_sets_the_error_bits():
    dev, storage, _, persisted, _ = bank(readonly=True, fill=0x5A)
    dev.write(0, 4, 0x40)
    dev.write(0, 4, 0x12345678)
    check(dev.read(0, 4), 0x00900090, "status after a program of a read-only bank: SR.7 | SR.4")
    dev.write(0, 4, 0x50)
    dev.write(0, 4, 0x20)
    dev.write(0, 4, 0xD0)
    check(dev.read(0, 4), 0x00A000A0, "status after an erase of a read-only bank: SR.7 | SR.5")
    check((bytes(storage[:4]), persisted), (b"\x5a" * 4, []), "(array, persisted) of a read-only bank")


def test_unknown_command_logs_and_reads_array():
    dev, _, romd, _, logged = bank()
    dev.write(0, 4, 0x42)
    check(romd, [False, True], "ROM mode around an unknown command")
    check(len(logged) == 1 and "unimplemented flash command sequence" in logged[0], True,
          f"one log line, observed {logged}")
    dev.write(0, 4, 0x20)
    dev.write(0, 4, 0x33)                              # neither confirm nor read array
    check((dev.wcycle, dev.cmd, len(logged)), (0, 0, 2), "(wcycle, cmd, log lines) after a bad confirm")


def test_reset_returns_to_read_array():
    dev, _, romd, _, _ = bank()
    dev.write(0, 4, 0x98)
    dev.reset()
    check((romd, dev.status, dev.wcycle), ([False, True], 0x80, 0), "(ROM mode calls, status, wcycle)")


@pytest.mark.parametrize("size", [1, 2, 4])
def test_array_reads_outside_rom_mode(size):
    dev, storage, _, _, _ = bank()
    storage[8:16] = bytes(range(1, 9))
    dev.write(0, 4, 0x70)
    dev.write(0, 4, 0xFF)                              # back to read array: QEMU's cmd 0
    dev.romd = False                                   # as if the slot were gone: reads come here
    check(dev.read(8, size), int.from_bytes(bytes(range(1, 1 + size)), "little"), f"{size}-byte data read")
