"""A debugger must not change the run: the same guest instructions, cycles,
console and exit statistics with breakpoints hit, steps taken, watchpoints and
interrupts, as without one.  A scripted debugger stands in for GDB (no socket):
it drives the stub's run control exactly as GDB does (at a breakpoint: remove
it, step, insert it again, continue)."""
from __future__ import annotations

import pytest

from armvirt import paths
from armvirt.console import Console
from armvirt.gdbstub import control as C
from armvirt.gdbstub.memory import GuestMemory
from armvirt.gdbstub.threads import Threads
from armvirt.machine import Machine, MachineConfig, run_machines
from tests.gdb_util import symbol, text_words

LDAXR_MASK, LDAXR = 0xBFFFFC00, 0x885FFC00


class ScriptedDebugger:
    """At every stop, does what GDB does for `continue` over breakpoints and `stepi`."""

    def __init__(self, machines, breakpoints=(), steps=3, hits=20, watch=None, interrupt_every=0):
        self.threads = Threads([m.vm for m in machines])
        self.control = C.RunControl(self.threads, self)
        self.breakpoints, self.steps, self.hits, self.watch = set(breakpoints), steps, hits, watch
        self.interrupt_every, self.polls = interrupt_every, 0
        self.stops = []
        self.hit_count = 0
        self._todo = 0                 # steps left after the current stop
        first = machines[0].vm.vcpus[0]
        self.control.pending = C.Stop(C.SIGTRAP, first, silent=True)     # as -S
        self.memory = GuestMemory(machines[0].vm)

    def poll(self, vcpu):
        self.polls += 1
        if self.interrupt_every and self.polls % self.interrupt_every == 0 and vcpu is not None:
            return C.Stop(C.SIGINT, vcpu)
        return None

    def _insert_all(self, except_pc=None, watch=True):
        for a in self.breakpoints - {except_pc}:
            self.control.insert_breakpoint(1, 0, a)
        if self.watch and watch:
            va, n = self.watch
            vcpu = self.threads.processes[0].vm.vcpus[0]
            ranges = self.memory.host_ranges(self.threads.state(vcpu), va, n)
            self.control.insert_watchpoint(1, 2, va, n, ranges)

    def stop(self, stop):
        self.control.steps = {}
        vcpu, c = stop.vcpu, self.control
        pc = self.threads.state(vcpu).get("pc")
        kind = "initial" if stop.silent else stop.reason or ("int" if stop.signal == C.SIGINT else "step")
        self.stops.append((kind, vcpu.index, pc))
        c.clear()                                        # GDB removes everything at a stop
        if kind == "int":
            self._todo = self.steps
        if kind in ("swbreak", "watch"):
            self.hit_count += 1
            if self.hit_count >= self.hits:
                self.breakpoints, self.watch = set(), None
            self._todo = max(self.steps, 1)              # step over it, then stepi on
        if self._todo > 0 or pc in self.breakpoints:      # (interrupted on a breakpoint: step over it)
            self._todo -= 1
            self._insert_all(except_pc=pc, watch=False)
            c.resume([vcpu])
        else:
            self._insert_all()
            c.resume([])


_BASELINES = {}


def _baseline(image, **cfg):
    key = (image, tuple(sorted(cfg.items())))
    if key not in _BASELINES:
        _BASELINES[key] = _run(image, **cfg)[0]
    return _BASELINES[key]


def _run(image, debugger=None, **cfg):
    m = Machine(MachineConfig(kernel=paths.image_path(image), max_insns=300_000_000, **cfg),
                _profile(), console=Console(echo=False))
    dbg = debugger(m) if debugger else None
    res = run_machines([m])
    return res[0], dbg, m


def _profile():
    from armvirt import profile
    return profile.load("xgene")


def _ldaxr_sites(image):
    return [a for a, w in text_words(paths.image_path(image)) if w & LDAXR_MASK == LDAXR]


def _same(base, res, dbg, m):
    got = (res.insns, res.cycles, res.status, res.console.lines, res.stats, dict(res.counters))
    want = (base.insns, base.cycles, base.status, base.console.lines, base.stats, dict(base.counters))
    assert got[:3] == want[:3], (f"with the debugger (after {len(dbg.stops)} stops): insns, cycles, status "
                                 f"{got[:3]}; without: {want[:3]}")
    assert got == want, f"console/exits differ: with {got[3:]}, without {want[3:]}"
    moved = dbg.control.moved_blocks()
    assert moved == 0, f"expected no moved block boundaries, observed {moved}"


CASES = {
    # SMP turns and exclusives: a breakpoint on every LDAXR of the spinlock, 3 steps each
    "spinlock-smp2": ("spinlock.elf", dict(smp=2), lambda img: _ldaxr_sites(img), 3, 40, None, 0),
    # short turns (quantum 1000 cycles) and long runs of steps: turn ends fall inside the
    # blocks being stepped, where a re-entry must not check them a second time
    "spinlock-short-turns": ("spinlock.elf", dict(smp=2, quantum=1000), lambda img: _ldaxr_sites(img), 300, 20,
                             None, 0),
    # two vCPUs time-sliced on one pCPU (preemption at turn ends)
    "spinlock-pcpus1": ("spinlock.elf", dict(smp=2, pcpus=1), lambda img: _ldaxr_sites(img), 2, 30, None, 0),
    # virtual timer interrupts at block boundaries: stop in the IRQ path and step into it,
    # on GICv3, through the ICC_* system-register accesses the core cannot execute
    "timer-gicv3": ("timer.elf", dict(gic_version=3), lambda img: [symbol(paths.image_path(img), "exc_dispatch")],
                    6, 15, None, 0),
    # a watchpoint on a store, and interrupts (Ctrl-C) at many poll points
    "gdb-demo-watch": ("gdb-demo.elf", dict(smp=2), lambda img: [], 1, 10,
                       lambda img: (symbol(paths.image_path(img), "counter"), 8), 0),
    "timer-interrupts": ("timer.elf", {}, lambda img: [], 4, 0, None, 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_debugger_leaves_the_run_unchanged(case, monkeypatch):
    image, cfg, bps, steps, hits, watch, interrupts = CASES[case]
    base = _baseline(image, **cfg)
    assert base.status == 0, f"baseline {image}: status {base.status}, {base.console.lines[-3:]}"
    if interrupts:
        monkeypatch.setattr(C, "POLL_CYCLES", 200_000)
    res, dbg, m = _run(image, lambda m: ScriptedDebugger(
        [m], bps(image), steps, hits, watch(image) if watch else None, interrupts), **cfg)
    kinds = {k for k, _, _ in dbg.stops}
    if hits:
        assert sum(1 for k, _, _ in dbg.stops if k in ("swbreak", "watch")) >= min(hits, 5), \
            f"expected breakpoint/watchpoint stops, observed {dbg.stops[:10]}"
    if steps:
        assert "step" in kinds, f"expected step stops, observed kinds {kinds}"
    if interrupts:
        assert "int" in kinds, f"expected interrupt stops (polls {dbg.polls}), observed kinds {kinds}"
    _same(base, res, dbg, m)


def test_steps_advance_one_instruction():
    """Each step ends before the next instruction: inside straight-line code the PC moves by 4."""
    image = "gdb-demo.elf"
    bump = symbol(paths.image_path(image), "bump")
    res, dbg, _ = _run(image, lambda m: ScriptedDebugger([m], [bump], steps=3, hits=2))
    assert res.status == 0, res.console.lines
    seq = [s for s in dbg.stops if s[0] in ("swbreak", "step")]
    i = next(i for i, s in enumerate(seq) if s[0] == "swbreak")
    pcs = [pc for _, _, pc in seq[i:i + 4]]
    assert pcs == [bump, bump + 4, bump + 8, bump + 12], f"expected PCs {[hex(bump + 4 * k) for k in range(4)]}, " \
                                                        f"observed {[hex(p) for p in pcs]}"
