"""The engine's external debug unit on hand-assembled code: halts land on the
right instruction with the right count, a halt before a block counts nothing,
breakpoints added after the code was translated still hit, and watchpoints halt
at the accessing instruction, before it retires."""
from __future__ import annotations

from engine.core import NEVER
from engine.debug import DebugUnit
from tests.harness import ENTRY, NOP, Harness, hvc, movz, str_x

STORE_AT = 0x4080_0000


class Ctl:
    """A controller that records every halt and lets the core go on at once."""

    def __init__(self, bps=(), watch=False):
        self.bps, self.watch_on = set(bps), watch
        self.halts, self.exits = [], []
        self.halt_at = NEVER

    def gate(self, cpu, pc):
        return pc

    def poll_at(self, cpu):
        return self.halt_at

    def breakpoint(self, cpu, addr):
        if addr not in self.bps:
            return None
        self.bps.discard(addr)                 # one-shot: going on from it must not hit it again
        return ("break", addr)

    def watch(self, cpu, is_write, pa, size):
        if not self.watch_on:
            return None
        self.watch_on = False                  # one-shot, as GDB steps over it with it removed
        return ("watch", pa, size)

    def step(self, cpu, addr, retired):
        return None

    def halted(self, cpu, pc, reason):
        self.halts.append((reason, pc, cpu.insns))
        if reason is None:
            self.halt_at = NEVER

    def left(self, cpu, pc, reason):
        self.exits.append((pc, reason))


def run_once(code, ctl=None, prepare=None):
    h = Harness(code)
    cpu = h.host.pcpus[0]
    if ctl is not None:
        unit = DebugUnit(cpu, ctl)
        if prepare:
            prepare(h, unit)
    ex = h.next_exit()
    return h, cpu, ex


CODE = [movz(1, 7), movz(2, STORE_AT >> 16, 16)] + [NOP] * 6 + [str_x(1, 2)] + [NOP] * 5 + [hvc(0)]


def test_breakpoint_halts_before_the_instruction_with_exact_counts():
    _, plain, ex0 = run_once(CODE)
    ctl = Ctl(bps=[ENTRY + 12, ENTRY + 36])
    _, cpu, ex = run_once(CODE, ctl, lambda h, u: u.set_breakpoints(set(ctl.bps)))
    assert [(r[0], pc, n) for r, pc, n in ctl.halts] == [("break", ENTRY + 12, 3), ("break", ENTRY + 36, 9)], \
        f"expected halts at +12 after 3 and at +36 after 9 instructions, observed {ctl.halts}"
    assert (cpu.insns, cpu.cycles, ex.elr) == (plain.insns, plain.cycles, ex0.elr), \
        f"with halts: {(cpu.insns, cpu.cycles)}; without: {(plain.insns, plain.cycles)}"


def test_breakpoint_on_code_translated_before():
    """The block was translated without the hook; setting a breakpoint drops it."""
    h = Harness(CODE)
    cpu = h.host.pcpus[0]
    h.next_exit()                                      # translate and run it once
    ctl = Ctl(bps=[ENTRY + 20])
    unit = DebugUnit(cpu, ctl)
    unit.set_breakpoints(set(ctl.bps))
    h.vcpu.ctx.pc = ENTRY
    h.next_exit()
    assert [pc for _, pc, _ in ctl.halts] == [ENTRY + 20], f"observed {ctl.halts}"


def test_halt_before_a_block_counts_nothing():
    _, plain, _ = run_once(CODE)
    ctl = Ctl()
    ctl.halt_at = 0                                    # halt before the very first block
    _, cpu, _ = run_once(CODE, ctl)
    assert ctl.halts and ctl.halts[0] == (None, ENTRY, 0), f"expected a poll halt at the entry, observed {ctl.halts}"
    assert (cpu.insns, cpu.cycles) == (plain.insns, plain.cycles), (cpu.insns, plain.insns)


def _watch_store(h, unit):
    slot = h.vm.memslots.find(STORE_AT)
    pa = slot.to_host_pa(STORE_AT)
    unit.set_watchpoints([(pa, pa + 7, False, True)])


def test_watchpoint_halts_at_the_store_before_it_retires():
    """The store's memory is written, its instruction not retired: going on runs it again."""
    _, plain, _ = run_once(CODE)
    seen = {}

    class Look(Ctl):
        def halted(self, cpu, pc, reason):
            super().halted(cpu, pc, reason)
            seen["mem"] = bytes(h.vm.memslots.find(STORE_AT).buf[STORE_AT - 0x4000_0000:][:8])

    ctl = Look(watch=True)
    h = Harness(CODE)
    cpu = h.host.pcpus[0]
    _watch_store(h, DebugUnit(cpu, ctl))
    h.next_exit()
    store = ENTRY + 8 * 4
    assert [(r[0], pc, n) for r, pc, n in ctl.halts] == [("watch", store, 8)], \
        f"expected one write halt at the store {store:#x} after 8 instructions, observed {ctl.halts}"
    assert seen["mem"] == (7).to_bytes(8, "little"), f"the store wrote 7 before the halt: {seen['mem'].hex()}"
    assert (cpu.insns, cpu.cycles) == (plain.insns, plain.cycles), (cpu.insns, plain.insns)


def test_watchpoints_leave_long_blocks_alone():
    """Memory hooks do not change where blocks end (no code hook on every instruction)."""
    code = [movz(1, 7), movz(2, STORE_AT >> 16, 16)] + [str_x(1, 2)] * 300 + [hvc(0)]
    _, plain, _ = run_once(code)
    ctl = Ctl(watch=True)
    _, cpu, _ = run_once(code, ctl, _watch_store)
    assert len(ctl.halts) == 1 and cpu.debug.moved_blocks == 0, (ctl.halts, cpu.debug.moved_blocks)
    assert (cpu.insns, cpu.cycles) == (plain.insns, plain.cycles), (cpu.insns, plain.insns)


def test_stepping_through_a_long_block_is_counted():
    """Stepping puts a code hook on every instruction, and TCG cuts a long block of
    stores earlier then: the unit counts it as a block that may have moved."""
    code = [movz(1, 7), movz(2, STORE_AT >> 16, 16)] + [str_x(1, 2)] * 300 + [hvc(0)]

    class Stepper(Ctl):
        todo = {ENTRY + 8, ENTRY + 12}

        def step(self, cpu, addr, retired):
            if addr not in self.todo:
                return None
            self.todo.discard(addr)
            return ("step", addr)

    h = Harness(code)
    unit = DebugUnit(h.host.pcpus[0], Stepper())
    unit.set_stepping(True)
    h.next_exit()
    assert unit.moved_blocks > 0, "expected the long block stepped through to be counted"
