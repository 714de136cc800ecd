"""-d in_asm and -d exec: QEMU's logs of translated and executed blocks, from a
Python block hook on each pCPU's engine.

The hook costs about 40x in guest speed (unicorn-facts.md), so it is installed
only when one of the items is on; translated code is dropped when it is, since
code translated before a hook was added does not call it.  The hook only reads:
the modeled cycles and instruction counts are the same with it and without.

Formats (QEMU 8, accel/tcg/translator.c, disas/capstone.c, accel/tcg/cpu-exec.c):

    ----------------
    IN: main
    0x40083d30:  a9be7bfd  stp      x29, x30, [sp, #-0x20]!
    ...
                                                   (a blank line ends the block)
    Trace 0: 0x40083d30 [0000000000000000/0000000040083d30/00000000/00000005] main

In a Trace line QEMU prints the CPU index, the translated block's host address,
cs_base, TB flags and compile flags; armvirt prints its pCPU (the vCPU's index too
while each vCPU has a pCPU of its own, the default), and having no host code, the
block's guest address, cs_base 0 (as on Arm), flags 0 and, where QEMU keeps a TB's
instruction count (CF_COUNT_MASK), the block's number of instructions.  in_asm logs
a block the first time it runs with those bytes at that address: armvirt drops
translated code on every VMID change, which QEMU would log again.
"""
from __future__ import annotations

import ctypes
from typing import Callable, TextIO

import capstone
import unicorn
from unicorn.unicorn_py3 import unicorn as _ucmod

UC = _ucmod.uclib
UC.uc_vmem_read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
UC.uc_vmem_read.restype = ctypes.c_int


class BlockLog:
    def __init__(self, out: TextIO, in_asm: bool, exec_: bool):
        self.out, self.in_asm, self.exec = out, in_asm, exec_
        self.md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        self.md.skipdata = True          # as QEMU: an undecodable word prints as .byte
        self.seen: set[tuple[int, bytes]] = set()

    def install(self, cpu, symbol: Callable[[int], str] = lambda pc: "") -> None:
        """Hook `cpu` (a PhysicalCpu); `symbol(pc)` names the code the pCPU runs now."""
        cpu.uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block, (cpu, symbol))
        cpu.uc.ctl_flush_tb()

    def _code(self, cpu, pc: int, size: int) -> bytes | None:
        """The block's bytes, through the guest's stage-1 and stage-2 translation."""
        buf = ctypes.create_string_buffer(size)
        if UC.uc_vmem_read(cpu.uch, pc, unicorn.UC_PROT_EXEC, buf, size):
            return None
        return buf.raw

    def _on_block(self, uc, pc: int, size: int, ud) -> None:
        cpu, symbol = ud
        if self.in_asm:
            code = self._code(cpu, pc, size)
            key = (pc, code)
            if key not in self.seen:
                self.seen.add(key)
                self.out.write(self.disassemble(pc, code, symbol(pc)) if code is not None else
                               f"----------------\nIN: {symbol(pc)}\n0x{pc:08x}:  "
                               f"(the block's {size} bytes do not translate for a debug read)\n\n")
        st = cpu.st
        # The fast path's block hook runs first; if it just stopped the engine here (an
        # interrupt, the end of a turn, the instruction limit), this block does not run now.
        if self.exec and not (st.irq_pending or st.turn_over or st.limit_hit):
            self.out.write(f"Trace {cpu.index}: {pc:#x} [{0:016x}/{pc:016x}/{0:08x}/{size >> 2:08x}] "
                           f"{symbol(pc)}\n")

    def disassemble(self, pc: int, code: bytes, name: str = "") -> str:
        lines = ["----------------", f"IN: {name}"]
        for insn in self.md.disasm(code, pc):
            word = int.from_bytes(insn.bytes[:4].ljust(4, b"\0"), "little")
            lines.append(f"0x{insn.address:08x}:  {word:08x}  {insn.mnemonic:<8} {insn.op_str}")
        return "\n".join(lines) + "\n\n"
