"""The host scheduler's resumes of paused vCPUs, in C (engine/fastpath.c av_sched_loop).

Most runs of an SMP guest end at a turn end or a sync point with nothing to do (a Linux
boot to init: 69,500 of its 73,500 runs): the scheduler then picks the vCPU furthest
behind, sets its turn's deadline and resumes it, about 70-85 us of Python each time for
a run of a few hundred instructions.  While every pCPU carries at most one vCPU, the C
loop takes those steps itself - the same picks, deadlines, turn counts and fast-MMIO
windows, so the same numbers - and hands back the first run that ends otherwise (an
exit, an interrupt, a served MMIO access, maintenance, the first user-space
instruction, anything handed to Python) for the host's path to finish, or the step
before a pick only the host may take (a blocked or host-only vCPU, the VMM's event).

ARMVIRT_ENGINE_RESUMES=off takes every step in Python (the same figures, bit for bit).
"""
from __future__ import annotations

import os

from engine.core import HCR_VIRTUAL_LINES, NEVER, STUB_PA, STUB_PSTATE, EngineFault
from engine.fastpath import ffi, lib

MODES = ("on", "off")


def mode_from_env() -> str:
    mode = os.environ.get("ARMVIRT_ENGINE_RESUMES", "on")
    if mode not in MODES:
        raise SystemExit(f"armvirt: error: ARMVIRT_ENGINE_RESUMES={mode!r}: must be one of {', '.join(MODES)}")
    return mode


class EngineResumes:
    def __init__(self, sched):
        self.sched = sched
        host = sched.host
        n = len(host.pcpus)
        self.s = ffi.new("struct av_sched *")
        self.slots = ffi.new("struct av_slot[]", n)
        self.s.n, self.s.quantum, self.s.lookahead = n, sched.quantum, sched.lookahead
        self.s.stub_pa, self.s.stub_pstate, self.s.lines = STUB_PA, STUB_PSTATE, HCR_VIRTUAL_LINES
        for p, cpu in enumerate(host.pcpus):
            self.slots[p].c = cpu.st
            self.slots[p].uc = cpu._uc_ptr
        self.runs = 0                       # resumes the loop took (for the README's profile)

    @staticmethod
    def usable(sched) -> bool:
        """One vCPU per pCPU at most (the pick is then by time and pCPU alone), more than
        one vCPU, no per-run trace timeline."""
        return (mode_from_env() == "on" and len(sched.entries) > 1 and not any(sched.shared.values())
                and sched.timeline is None)

    @staticmethod
    def may_resume(sched, p: int, v) -> bool:
        """The scheduler's step for `v` would be a plain resume: paused mid-guest, loaded on
        its pCPU, awake, nobody watching its runs one by one."""
        fm = v.fast_mmio
        return (v.paused and v.blocked_until is None and sched.loaded.get(p) is v and v.cpu.debug is None
                and v.ledger.trace is None and (fm is None or v.fm_learn is None))

    def run(self, live, ev) -> tuple | None:
        """Resume paused vCPUs until a run is the host's to finish: (machine, vCPU) of that
        run, or None if the loop stopped before a pick.  The scheduler's own pick is a
        paused vCPU it may resume (may_resume), and the VMM's event is not due."""
        sched, s, slots = self.sched, self.s, self.slots
        for p in range(s.n):
            slots[p].kind = lib.SLOT_NONE
        shared = sched.host.shared
        mine = {}
        for m, v in live:
            p = sched.pcpu_of[id(v)]
            sl = slots[p]
            if v.blocked_until is not None:
                sl.kind, sl.wake = lib.SLOT_BLOCKED, v.blocked_until
                continue
            if not self.may_resume(sched, p, v):
                sl.kind = lib.SLOT_HOST
                continue
            sl.kind = lib.SLOT_PAUSED
            owner = sched.owner.get(p)
            sl.owned = owner is not None and owner[0] is v
            sl.owner_deadline = owner[1] if sl.owned else 0
            sl.last_turn = sched.last_turn[id(v)]
            # Vcpu.run and Lowvisor.run's steps before the engine runs, which no resume moves
            v.on_pending = False
            v.lowvisor.clear_monitor = v.cpu.st.fm_clear_monitor = shared
            v.lowvisor._exit = None
            v.cpu.fault = None
            fm = v.fast_mmio
            sl.fm = fm is not None and fm.arm_fixed(v, multi=True, quantum=sched.quantum,
                                                    lookahead=sched.lookahead, shared=False)
            quiet = fm is not None and fm.entry_quiet(v, paused=False)   # run() unpauses before enter
            sl.quiet = quiet
            if fm is not None:
                v.fm_entry_quiet = quiet
            v.cpu.running_as = (m.vm, v)
            mine[p] = (m, v)
        s.turns, s.vmm_at = sched.turns, NEVER if ev is None else ev[0]
        s.clear_monitor = shared
        r = lib.av_sched_loop(s, slots)
        for p, (m, v) in mine.items():
            v.cpu.running_as = None
            m.vm.running = None
            sl = slots[p]
            if sl.owned:
                sched.owner[p] = (v, sl.owner_deadline)
                sched.last_turn[id(v)] = sl.last_turn
        sched.turns = s.turns
        self.runs += s.runs
        if r < 0:
            raise AssertionError("the engine's resume loop was asked for a step it does not take")
        if s.last != 2**64 - 1:
            sched._last_run, sched._vmm_ran = mine[s.last][1], False
        for p, (m, v) in mine.items():                  # FastMmio.pull after each resume
            if p != s.ran and v.fast_mmio is not None:
                v.fast_mmio.pull(v)
        if r == 0:
            return None
        m, v = mine[s.ran]
        cpu = v.cpu
        if s.stage == 1:
            cpu.check_stub(s.err)
            raise EngineFault("the CLREX stub handed an exception to the host")
        cpu.emulated(s.err)
        return m, v
