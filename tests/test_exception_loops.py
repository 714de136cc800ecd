"""A guest faulting in its own vector retires no instruction, forever: --max-insns
still ends the run (exit code 3), and on SMP the other vCPUs keep their turns -
whether the loop stays in the engine (an UNDEF, or a stage-1 fetch abort that
translates no block) or runs through the host (a stage-2 fetch abort answered by
an injected prefetch abort)."""
from __future__ import annotations

import struct

import pytest

from armvirt import profile
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig
from engine import layout
from tests.harness import hvc, movz, msr

ISB, UDF = 0xD5033FDF, 0x00000000
ZEROS = layout.RAM_BASE + 0x20_0000            # RAM nobody writes: every word is UDF #0
EMPTY_TABLE = layout.RAM_BASE + 0x30_0000      # an all-invalid level-1 table
NO_RAM = 0x3000_0000                           # an IPA with neither RAM nor a device
ENTRY = layout.RAM_BASE + layout.KERNEL_TEXT_OFFSET
SECONDARY = ENTRY + 0x800


def movk(rd, imm16, shift):
    return 0xF2800000 | (shift // 16) << 21 | imm16 << 5 | rd


def load(rd, value):
    return [movz(rd, value >> 16 & 0xFFFF, 16), movk(rd, value & 0xFFFF, 0)]


def set_vbar(addr):
    return load(0, addr) + [msr(0, 3, 0, 12, 0, 0), ISB]         # VBAR_EL1


UNDEF_LOOP = set_vbar(ZEROS) + [UDF]
HOST_LOOP = set_vbar(NO_RAM) + [UDF]
# MMU on with an empty table: the next fetch (and the vector's) aborts at stage 1.
STAGE1_LOOP = (set_vbar(0x1000) + load(0, EMPTY_TABLE) + [msr(0, 3, 0, 2, 0, 0)]            # TTBR0_EL1
               + load(1, 25 | 1 << 23 | 2 << 30) + [msr(1, 3, 0, 2, 0, 2), ISB]           # TCR_EL1
               + [movz(2, 1), msr(2, 3, 0, 1, 0, 0), ISB])                                # SCTLR_EL1.M
LOOPS = {"undef-in-vector": UNDEF_LOOP, "stage1-fetch-abort": STAGE1_LOOP, "stage2-fetch-abort": HOST_LOOP}

# CPU 1 powers the system off: it can only if CPU 0's loop leaves it turns.
CPU_ON = load(0, 0xC4000003) + [movz(1, 1)] + load(2, SECONDARY) + [movz(3, 0), hvc(0)]
SYSTEM_OFF = load(0, 0x84000008) + [hvc(0)]


def raw_image(tmp_path, code: list[int], secondary: list[int] = ()) -> str:
    blob = bytearray(struct.pack(f"<{len(code)}I", *code))
    if secondary:
        blob += bytes(SECONDARY - ENTRY - len(blob)) + struct.pack(f"<{len(secondary)}I", *secondary)
    path = tmp_path / "loop.bin"
    path.write_bytes(bytes(blob))
    return str(path)


def run(path, **cfg):
    m = Machine(MachineConfig(kernel=path, **cfg), profile.load("xgene"), console=Console(echo=False))
    return m.run()


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_max_insns_ends_an_exception_loop(tmp_path, loop):
    res = run(raw_image(tmp_path, LOOPS[loop]), max_insns=20_000)
    assert (res.reason, res.status) == ("insn-limit", 3), \
        f"{loop}: expected insn-limit with status 3, got {res.reason} {res.status}: {res.message}"
    assert "exception entries that retired none" in res.message, f"{loop}: {res.message}"
    assert res.insns < 100, f"{loop}: the loop retires no instruction, yet {res.insns} were counted"


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_an_exception_loop_leaves_other_vcpus_their_turns(tmp_path, loop):
    res = run(raw_image(tmp_path, CPU_ON + LOOPS[loop], SYSTEM_OFF), smp=2, max_insns=2_000_000)
    assert (res.reason, res.status) == ("shutdown", 0), \
        f"{loop}: expected CPU 1's SYSTEM_OFF (shutdown, 0), got {res.reason} {res.status}: {res.message}"


def test_cli_exit_code_3(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "armvirt", "run", "--max-insns", "5000",
                        raw_image(tmp_path, STAGE1_LOOP)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, f"expected exit code 3, got {r.returncode}: {r.stdout[-500:]} {r.stderr[-500:]}"
