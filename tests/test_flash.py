"""The virt board's flash and firmware boot (armvirt/flash.py): -bios and -drive if=pflash
as QEMU reads them, the firmware boot contract (DTB at RAM base, entry 0x0 at EL1h,
x0 = 0), a guest running from bank 0 that queries, programs and re-reads bank 1
through the read-only memory slot and the CFI01 model, and what goes back to a file."""
import subprocess
import sys
from pathlib import Path

import pytest

from armvirt import cli
from armvirt.console import Console
from armvirt.flash import PflashDrive
from armvirt.machine import Machine, MachineConfig
from engine import aarch64, layout
from tests import dt_tree

MIB = 1 << 20

# tests/data-less firmware, position independent, run from flash bank 0 (source below):
# prints x0 at entry, CurrentEL, the word at RAM base (the DTB's magic), then on bank 1:
# CFI query word 0x10 ('Q') and 0x27 (part size), word-programs 0xcafef00d at 0x1000,
# reads the status, returns to read array and reads the word back; then SYSTEM_OFF.
#     mov x19, x0; mrs x20, CurrentEL; mov x1, #0x40000000; ldr w21, [x1]
#     mov x1, #0x04000000; mov w2, #0x98; str w2, [x1, #0x154]; ldr w22, [x1, #0x40]
#     ldr w23, [x1, #0x9c]; mov w2, #0xff; str w2, [x1]; mov w2, #0x40; str w2, [x1, #0x1000]
#     movz w3, #0xf00d; movk w3, #0xcafe, lsl #16; str w3, [x1, #0x1000]; ldr w24, [x1]
#     mov w2, #0xff; str w2, [x1]; ldr w25, [x1, #0x1000]
#     (mov x0, x19..x25; bl puthex) x7; PSCI SYSTEM_OFF (hvc #0)
#     puthex: 16 hex digits of x0 and a newline to the PL011 at 0x09000000
FIRMWARE = bytes.fromhex(
    "f30300aa544238d50100a8d2350040b90180a0d202138052225401b9364040b9379c40b9e21f8052220000b9"
    "02088052220010b9a3019e52c35fb972230010b9380040b9e21f8052220000b9390050b9e00313aa11000094"
    "e00314aa0f000094e00315aa0d000094e00316aa0b000094e00317aa09000094e00318aa07000094e00319aa"
    "05000094000180520080b072020000d4000000140920a1d28a0780d20b24ca9a6b0d40927f2900f16cc10091"
    "6d5d0191ac218c9a2c0100394a1100f10affff544c0180522c010039c0035fd6")
# What it prints under QEMU 7.2 (`qemu-system-aarch64 -M virt -cpu cortex-a57 -bios fw.bin
# -drive if=pflash,format=raw,unit=1,file=b1.bin`): EL1, QEMU's CFI answers, SR.7 ready.
EXPECTED = ["0000000000000000", "0000000000000004", "00000000edfe0dd0", "0000000000510051",
            "0000000000190019", "0000000000800080", "00000000cafef00d"]


def write(path: Path, data: bytes, size: int | None = None) -> str:
    path.write_bytes(data)
    if size is not None:
        with open(path, "r+b") as f:
            f.truncate(size)
    return str(path)


def armvirt(*args):
    return subprocess.run([sys.executable, "-m", "armvirt", "run", "--quiet", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def check_run(r, want_lines, what):
    got = r.stdout.splitlines()
    assert (r.returncode, got) == (0, want_lines), \
        f"{what}: expected exit 0 and {want_lines}, observed {r.returncode}: {got} {r.stderr!r}"


def test_firmware_boot_contract(xgene, tmp_path):
    """QEMU arm_setup_firmware_boot: the DTB (with flash@0) at RAM base, PC 0 at EL1h, x0-x3 0."""
    m = Machine(MachineConfig(kernel=None, bios=write(tmp_path / "fw.bin", FIRMWARE)), xgene,
                console=Console(echo=False))
    ctx = m.vcpus[0].ctx
    got = ([ctx.x(i) for i in range(4)], ctx.pc, ctx.pstate, m.dtb_addr)
    want = ([0, 0, 0, 0], 0x0, aarch64.RESET_PSTATE, layout.RAM_BASE)
    assert got == want, f"expected (x0-x3, pc, pstate, DTB address) {want}, observed {got}"
    ram = bytes(m.ram.buf[:len(m.dtb)])
    assert ram == m.dtb, "the DTB bytes at RAM base"
    flash = dt_tree.from_blob(m.dtb)["/flash@0"]
    want_reg = b"".join(v.to_bytes(8, "big") for v in (0, 64 * MIB, 64 * MIB, 64 * MIB))
    got_node = (flash["compatible"], flash["reg"], flash["bank-width"])
    assert got_node == (b"cfi-flash\0", want_reg, (4).to_bytes(4, "big")), \
        f"flash@0 (compatible, reg, bank-width): expected QEMU's, observed {got_node}"
    bank0 = bytes(m.flash.slots[0].buf[:len(FIRMWARE)])
    assert bank0 == FIRMWARE, "bank 0 holds the -bios file"


def test_firmware_runs_from_flash_and_programs_bank1(tmp_path):
    fw = write(tmp_path / "fw.bin", FIRMWARE)
    b1 = write(tmp_path / "b1.bin", b"", 64 * MIB)
    check_run(armvirt("-bios", fw, "-drive", f"if=pflash,format=raw,unit=1,file={b1}"), EXPECTED, "-bios + unit 1")
    with open(b1, "rb") as f:
        f.seek(0x1000)
        word = f.read(4)
    assert word == bytes.fromhex("0df0feca"), f"the programmed word in the -drive file: expected 0df0feca, " \
                                             f"observed {word.hex()}"


def test_read_only_drive_refuses_programming(tmp_path):
    fw = write(tmp_path / "fw.bin", FIRMWARE)
    b1 = write(tmp_path / "b1.bin", b"", 64 * MIB)
    want = EXPECTED[:5] + ["0000000000900090", "0000000000000000"]   # SR.7 | SR.4, array unchanged
    check_run(armvirt("-bios", fw, "-drive", f"if=pflash,format=raw,unit=1,file={b1},readonly=on"), want,
              "readonly=on")
    data = Path(b1).read_bytes()
    assert data.count(0) == len(data), "a readonly=on drive file is never written"


def test_pflash_unit0_is_a_firmware_boot_and_bank1_defaults_to_memory(tmp_path):
    """-drive unit 0 boots like -bios; bank 1 with no image is zeros, writable, not kept;
    -pflash takes the next free unit."""
    fw = write(tmp_path / "fw0.bin", FIRMWARE, 64 * MIB)
    check_run(armvirt("-pflash", fw), EXPECTED, "-pflash FILE (unit 0)")
    check_run(armvirt("-drive", f"if=pflash,format=raw,file={fw},readonly=on"), EXPECTED, "-drive unit 0")


def test_bios_bank_is_reloaded_on_reset(xgene, tmp_path):
    m = Machine(MachineConfig(kernel=None, bios=write(tmp_path / "fw.bin", FIRMWARE)), xgene,
                console=Console(echo=False))
    bank0 = m.flash.banks[0]
    bank0.write(0, 4, 0x40)
    bank0.write(0, 4, 0x12345678)
    assert bytes(m.flash.slots[0].buf[:4]) == bytes.fromhex("78563412"), "-bios flash is writable (QEMU's)"
    m.system_event(2)                             # SYSTEM_RESET
    got = (bytes(m.flash.slots[0].buf[:len(FIRMWARE)]) == FIRMWARE, bank0.romd, m.vcpus[0].ctx.pc)
    assert got == (True, True, 0), f"after reset (file again, ROM mode, PC): expected (True, True, 0), observed {got}"


@pytest.mark.parametrize("args,needle", [
    (["-bios", "/nonexistent/u-boot.bin"], "Could not find ROM image '/nonexistent/u-boot.bin'"),
    (["-bios", "{big}"], "Could not load ROM image"),
    (["-drive", "if=pflash,format=raw,file={small}"], "device requires 67108864 bytes, block backend provides 512 bytes"),
    (["-drive", "if=pflash,format=raw,file={big}"], "device requires 67108864 bytes"),
    (["-drive", "if=pflash,format=raw,file=/nonexistent/f"], "Could not open '/nonexistent/f': No such file"),
    (["-drive", "if=pflash,format=raw,unit=2,file={flash}"], "machine type does not support if=pflash,bus=0,unit=2"),
    (["-drive", "if=pflash,format=raw,file={flash}", "-bios", "{fw}"],
     "The contents of the first flash device may be specified with -bios or with -drive if=pflash"),
    (["-drive", "if=pflash,format=raw,file={flash}", "-drive", "if=pflash,format=raw,unit=0,file={flash}"],
     "drive with bus=0, unit=0 exists"),
    (["-drive", "if=pflash,format=qcow2,file={flash}"], "format=qcow2 is not supported by armvirt"),
    (["-drive", "file={flash}"], "if=virtio is not supported by armvirt"),
    (["-drive", "if=none,file={flash}"], "-drive if=none,file="),
    (["-bios", "{fw}", "-kernel", "{fw}"], "-kernel with -bios/-drive if=pflash: QEMU hands the kernel"),
    (["-bios", "{fw}", "-append", "x"], "-append only allowed with -kernel option"),
])
def test_flash_options_errors_are_one_line(capsys, tmp_path, args, needle):
    files = {"fw": write(tmp_path / "fw.bin", FIRMWARE), "small": write(tmp_path / "s.bin", b"x" * 300),
             "big": write(tmp_path / "big.bin", b"", 64 * MIB + 1), "flash": write(tmp_path / "f.bin", b"", 64 * MIB)}
    args = [a.format(**files) for a in args]
    rc = cli.main(["run", *args])
    out, err = capsys.readouterr()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, \
        f"{args}: expected exit 2 and one line with {needle!r}, observed {rc}: {err!r}"


def test_drive_units_follow_the_command_line():
    from armvirt.qemu_args import parse_drives
    got = parse_drives([("-pflash", "a"), ("-drive", "if=pflash,file=b,readonly=on"),
                        ("-drive", "if=pflash,index=1,file=c")])
    want = (PflashDrive("a", 0), PflashDrive("b", 1, True), PflashDrive("c", 1))
    assert got == want, f"expected {want}, observed {got}"


# Firmware that runs code from bank 1, reprograms that code and runs it again after the
# architecture's maintenance (source below): bank 1 starts as `mov x0, #1; ret`.
#     mov x1, #0x04000000; blr x1; mov x19, x0
#     mov w2, #0x40; str w2, [x1]; movz w3, #0x0040; movk w3, #0xd280, lsl #16; str w3, [x1]
#     mov w2, #0xff; str w2, [x1]; ic iallu; dsb sy; isb; blr x1; mov x20, x0
#     print '0' + x19, '0' + x20, '\n' to the PL011; PSCI SYSTEM_OFF
REPROGRAM = bytes.fromhex(
    "0180a0d220003fd6f30300aa0180a0d202088052220000b9030880520350ba72230000b9e21f8052220000b9"
    "1f7508d59f3f03d5df3f03d520003fd6f40300aa0420a1d265c20011850000b985c20011850000b945018052"
    "850000b9000180520080b072020000d400000014")
BANK1_CODE = bytes.fromhex("200080d2c0035fd6")      # mov x0, #1; ret


def test_code_reprogrammed_in_flash_runs_anew(tmp_path):
    """A word programmed over code the guest ran from the bank, then IC IALLU: the next
    call runs the new instruction (mov x0, #2), not the code translated before - host
    writes and TLB flushes leave translated code in place (PhysicalCpu.flush_tlb)."""
    fw = write(tmp_path / "fw.bin", REPROGRAM)
    bank1 = write(tmp_path / "b1.bin", BANK1_CODE, 64 * MIB)
    check_run(armvirt("-bios", fw, "-drive", f"if=pflash,format=raw,unit=1,file={bank1}"), ["12"],
              "bank-1 code before and after reprogramming")
