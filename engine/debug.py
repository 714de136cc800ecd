"""External debug of a physical CPU: a debugger halts the core at an instruction
boundary, and neither the guest nor the model can tell (as halting debug puts a PE
in Debug state: no exception is taken and nothing architectural happens on entry
or exit, ARM ARM H2.4).

The core halts in one of two ways, both invisible to the cost model:
- before a block starts (the fast path's dbg_halt_at): nothing of the block has
  run or been counted, and its deadline checks are made when it really starts;
- from a code hook, at an instruction inside a block the fast path has entered:
  the rest of the block is uncounted, and the re-entry there continues that block
  (dbg_resume: counted again, not checked again), so interrupts and scheduler turns
  fall on the same instructions as in a run without a debugger.
Breakpoints are code hooks on their own addresses; watchpoints are memory hooks on
the watched physical ranges (Unicorn 2.1 bounds and reports memory hooks by
physical address).  A stop requested from a memory hook ends the run right after
that access with the PC at the accessing instruction and nothing else of it done
(measured: a store's memory is written, its register writeback is not): the core
halts before the instruction retires and runs it again when it goes on, as a
hardware watchpoint does.  Stepping is a code hook on every instruction, only
while a step is in progress.  Translated code carries the hooks it was
translated with and is not invalidated by new ones (unicorn-facts.md), so every
change drops it; translating again from the same address gives the same block.
"""
from __future__ import annotations

from typing import Protocol

import unicorn


# Memory hooks are bounded by the start of an access; an access of up to 16 bytes
# (a Q register) that starts before the watched range still overlaps it.
MAX_ACCESS = 16
# With a code hook on every instruction (stepping) TCG ends blocks of loads and
# stores at about 250 instructions instead of 256 (measured): a block that long,
# stepped through, may end elsewhere than without the debugger.
LONG_BLOCK = 240 * 4


class Controller(Protocol):
    """The debugger's side (armvirt.gdbstub): what a halt means and when to halt."""

    def gate(self, cpu, pc: int) -> int:
        """Before the guest runs on `cpu` from `pc`: may hold the core halted; returns the PC to run from."""

    def poll_at(self, cpu) -> int:
        """Cycles at which the core halts briefly so the debugger can look at its connection."""

    def breakpoint(self, cpu, addr: int):
        """A breakpointed address is about to execute: a stop reason, or None to go on."""

    def watch(self, cpu, is_write: bool, pa: int, size: int):
        """A watched physical range is accessed: a stop reason, or None."""

    def step(self, cpu, addr: int, retired: int):
        """An instruction is about to execute while stepping: a stop reason, or None."""

    def halted(self, cpu, pc: int, reason) -> None:
        """The core is halted at `pc` (reason None: a poll); returns when it may go on."""

    def left(self, cpu, pc: int, reason) -> None:
        """The guest stopped for the hypervisor (an exit) at `pc`; `reason`: a stop that came with it."""


class DebugUnit:
    def __init__(self, cpu, controller: Controller):
        self.cpu, self.controller = cpu, controller
        self._breakpoints: dict[int, int] = {}        # address -> hook
        self._watches: dict[tuple, list] = {}        # (lo, hi, read, write) -> hooks
        self._step_hook = None
        self._long_blocks: set[int] = set()          # stepped through a block of LONG_BLOCK+
        self.armed = False                           # the guest is running under this unit
        self.reason = None                           # what a hook halted the core for
        self._exited = False
        self._el2_vector = cpu.el2_vector            # to see an exit taken in the same run
        cpu.el2_vector = self._on_el2_vector
        cpu.debug = self

    # --- what the debugger sets -------------------------------------------------------
    def set_breakpoints(self, addresses) -> None:
        addresses = set(addresses)
        if addresses == set(self._breakpoints):
            return
        for a in set(self._breakpoints) - addresses:
            self.cpu.uc.hook_del(self._breakpoints.pop(a))
        for a in sorted(addresses - set(self._breakpoints)):
            self._breakpoints[a] = self.cpu.uc.hook_add(unicorn.UC_HOOK_CODE, self._on_breakpoint,
                                                        begin=a, end=a)
        self.cpu.uc.ctl_flush_tb()

    def set_watchpoints(self, ranges) -> None:
        """`ranges`: (lo, hi, read, write) physical ranges, hi inclusive."""
        ranges = set(ranges)
        if ranges == set(self._watches):
            return
        uc = self.cpu.uc
        for key in set(self._watches) - ranges:
            for h in self._watches.pop(key):
                uc.hook_del(h)
        for key in sorted(ranges - set(self._watches)):
            lo, hi, read, write = key
            kinds = ([unicorn.UC_HOOK_MEM_READ] if read else []) + ([unicorn.UC_HOOK_MEM_WRITE] if write else [])
            self._watches[key] = [uc.hook_add(k, self._on_access, begin=max(0, lo - MAX_ACCESS + 1), end=hi)
                                  for k in kinds]
        self.cpu.flush_tlb()                         # accesses find the hooks at TLB fill

    def set_stepping(self, on: bool) -> None:
        if on == (self._step_hook is not None):
            return
        if on:
            self._step_hook = self.cpu.uc.hook_add(unicorn.UC_HOOK_CODE, self._on_step)
        else:
            self.cpu.uc.hook_del(self._step_hook)
            self._step_hook = None
        self.cpu.uc.ctl_flush_tb()

    @property
    def moved_blocks(self) -> int:
        """Re-entries after a halt whose block did not end where the halted one did, and long
        blocks stepped through: their boundaries may differ from a run without the debugger."""
        return self.cpu.st.dbg_reshaped + len(self._long_blocks)

    # --- hooks --------------------------------------------------------------------------
    def _on_breakpoint(self, uc, addr, size, _ud) -> None:
        if self.armed and self.reason is None:
            self._halt(uc, self.controller.breakpoint(self.cpu, addr))

    def _on_step(self, uc, addr, size, _ud) -> None:
        if self.armed and self.reason is None:
            st = self.cpu.st
            if st.block_end - st.block_start >= LONG_BLOCK:
                self._long_blocks.add(st.block_start)
            self._halt(uc, self.controller.step(self.cpu, addr, self.retired_before(addr)))

    def _on_access(self, uc, access, pa, size, value, _ud) -> None:
        if self.armed and self.reason is None:
            reason = self.controller.watch(self.cpu, access == unicorn.UC_MEM_WRITE, pa, size)
            if reason is not None:
                self.cpu.st.dbg_halt_at = 0          # should the run go on, before the next block
                self._halt(uc, reason)

    def _halt(self, uc, reason) -> None:
        if reason is not None:
            self.reason = reason
            uc.emu_stop()

    def _on_el2_vector(self, *args) -> None:
        self._exited = True
        self._el2_vector(*args)

    def retired_before(self, pc: int) -> int:
        """Instructions retired before `pc` (the fast path counts a block on entry)."""
        st = self.cpu.st
        if st.block_start <= pc < st.block_end:
            return st.insns - ((st.block_end - pc) >> 2)
        return st.insns

    # --- running ------------------------------------------------------------------------
    def run(self, pc: int) -> None:
        """PhysicalCpu.run with a debugger attached: halts happen in here, and the
        engine goes on from the same instruction when the debugger lets it."""
        cpu, st = self.cpu, self.cpu.st
        while True:
            pc = self.controller.gate(cpu, pc)
            if st.dbg_resume and pc != st.dbg_resume_pc:
                st.dbg_resume = 0                    # the debugger moved the PC: a block starts there
            self.reason, self._exited = None, False
            st.dbg_halted = 0
            st.dbg_halt_at = self.controller.poll_at(cpu)
            st.dbg_active = 1
            self.armed = True
            try:
                cpu.emulate(pc)
            finally:
                self.armed = False
                st.dbg_active = 0
            pc = cpu.pc()
            if self._left_for_hypervisor() or (self.reason is None and not st.dbg_halted):
                st.dbg_resume = 0
                self.controller.left(cpu, pc, self.reason)
                return
            if st.block_start <= pc < st.block_end:  # halted by a hook inside an entered block
                st.dbg_resume, st.dbg_resume_pc, st.dbg_resume_end = 1, pc, st.block_end
                cpu.retire_before(pc)
            self.controller.halted(cpu, pc, self.reason)

    def _left_for_hypervisor(self) -> bool:
        """The engine also stopped for something the hypervisor must handle."""
        st = self.cpu.st
        return bool(self._exited or st.trap_esr or st.irq_pending or st.turn_over or st.limit_hit)

    def detach(self) -> None:
        self.set_breakpoints(())
        self.set_watchpoints(())
        self.set_stepping(False)
        self.cpu.el2_vector = self._el2_vector
        self.cpu.debug = None

