"""The host scheduler: runs every vCPU of every VM on the host's pCPUs in
deterministic turns of virtual time (DESIGN.md section 6: nothing reads the
host clock, so the same inputs give the same numbers bit for bit).

Each step runs the vCPU that is furthest behind in virtual time (a blocked
one counts at its wake-up time); ties go to the lower pCPU, then to the
vCPU of that pCPU that ran least recently, then to creation order.  A turn
may not run more than a quantum ahead of any other pCPU that is running, so
shared-memory waits between vCPUs stay causal.  When a pCPU carries more
vCPUs than one, a vCPU whose turn ended mid-guest is preempted by the
scheduler tick before another vCPU takes the pCPU: the exit and the switch
are charged like any other (vcpu.preempt)."""
from __future__ import annotations

from armvirt.engine_resumes import EngineResumes
from host_kernel import vm_switch
from host_kernel.vcpu import (EXIT_BLOCKED, EXIT_POWER_OFF, EXIT_PREEMPTED, KVM_EXIT_HALTED,
                              KVM_EXIT_INSN_LIMIT, KVM_EXIT_MMIO, KVM_EXIT_SYSTEM_EVENT)
from timers.generic_timer import NEVER


class Scheduler:
    def __init__(self, host, machines: list, quantum: int):
        self.host, self.machines, self.quantum = host, machines, quantum
        self.entries = [(m, v) for m in machines for v in m.vcpus]
        self.pcpu_of = {id(v): host.pcpus.index(v.cpu) for _, v in self.entries}
        self.order = {id(v): i for i, (_, v) in enumerate(self.entries)}
        self.last_turn = {id(v): -1 for _, v in self.entries}
        self.owner = {}               # pCPU index -> (vCPU, end of its turn)
        self.loaded = {}              # pCPU index -> the vCPU last loaded there (vcpu_load/put);
                                      # if it is paused mid-guest, its context is still in the core
        self.shared = {p: sum(1 for _, v in self.entries if self.pcpu_of[id(v)] == p) > 1
                       for p in range(len(host.pcpus))}
        self.turns = 0
        self.lookahead = host.lookahead
        self.timeline = host.trace.timeline     # --trace-out: who has each pCPU, when
        self._last_run, self._vmm_ran = None, False   # for the exits the engine serves
        self._resumes = EngineResumes(self) if EngineResumes.usable(self) else None

    def _live(self):
        for m, v in self.entries:
            if not m.vm.finished and v.powered_on:
                yield m, v

    def _in_turn(self, p: int, v) -> bool:
        """`v` owns pCPU `p` and its turn is not over (a user-space exit does not give
        the pCPU away; the end of the turn does)."""
        owner = self.owner.get(p)
        return owner is not None and owner[0] is v and v.cpu.cycles < owner[1]

    def _clocks(self) -> list[int]:
        """Every pCPU's virtual time, read once for a step (a vCPU's time is its pCPU's)."""
        return [cpu.cycles for cpu in self.host.pcpus]

    def _pick(self, live, clocks: list[int]):
        best, best_key = None, None
        owner_get, pcpu_of, last_turn, order = self.owner.get, self.pcpu_of, self.last_turn, self.order
        for m, v in live:
            p = pcpu_of[id(v)]
            now = clocks[p]
            t = now if v.blocked_until is None else v.blocked_until
            owner = owner_get(p)
            if owner is not None:
                o = owner[0]
                if o is not v and o.paused and now < owner[1]:
                    continue                      # its pCPU's owner paused at a sync point, mid-turn
                in_turn = o is v and now < owner[1]
            else:
                in_turn = False
            key = (t, p, not in_turn, last_turn[id(v)], order[id(v)])
            if best_key is None or key < best_key:
                best, best_key = (m, v), key
        return best, (best_key[0] if best_key else None)

    def _others(self, live, vcpu, clocks: list[int]) -> tuple[int, int]:
        """(the earliest time of another live vCPU, blocked ones at their wake-up; the
        earliest time of a running vCPU on another pCPU), NEVER where there is none."""
        pcpu_of = self.pcpu_of
        mine = pcpu_of[id(vcpu)]
        pick_bound, others_min = NEVER, NEVER
        for _, v in live:
            if v is vcpu:
                continue
            if v.blocked_until is None:
                p = pcpu_of[id(v)]
                c = clocks[p]
                if c < pick_bound:
                    pick_bound = c
                if p != mine and c < others_min:
                    others_min = c
            elif v.blocked_until < pick_bound:
                pick_bound = v.blocked_until
        return pick_bound, others_min

    def _turn_deadline(self, vcpu, others_min: int) -> int:
        """A quantum past the slowest other pCPU that still has a vCPU running."""
        return min(vcpu.cpu.cycles, others_min) + self.quantum

    def _sync_point(self, vcpu, others_min: int) -> int:
        """No more than the host's lookahead past the slowest other running pCPU, so that a
        kick (a physical SGI) from it never arrives in this one's past (Host.lookahead).
        The vCPU pauses there within its turn: no scheduler tick, no preemption."""
        return NEVER if others_min == NEVER else min(vcpu.cpu.cycles, others_min) + self.lookahead

    def _vmm_next(self):
        """The earliest timed event of a VMM's user-space devices (UART line, RTC), or None."""
        best = None
        for m in self.machines:
            if not m.vm.finished:
                d = m.vmm_deadline()
                if d != NEVER and (best is None or d < best[0]):
                    best = (d, m)
        return best

    def run(self) -> None:
        while True:
            live = list(self._live())
            clocks = self._clocks()
            pick, t = self._pick(live, clocks)
            if pick is None:
                break
            ev = self._vmm_next()
            if ev is not None and ev[0] <= t:
                # The VMM's I/O thread runs on a host CPU of its own: its event happens at
                # its own virtual time, before any vCPU runs past it.
                ev[1].vmm_event(ev[0], t)
                self._vmm_ran = True
                continue
            m, vcpu = pick
            if t == NEVER:
                for mm in self.machines:
                    if not mm.vm.finished:
                        mm.finish("halted", "every vCPU is blocked with nothing that could wake it")
                break
            p = self.pcpu_of[id(vcpu)]
            if self._resumes is not None and self._resumes.may_resume(self, p, vcpu):
                done = self._resumes.run(live, ev)     # resumes in C, until one is the host's
                if done is not None:
                    m, vcpu = done
                    m.vm.running = vcpu
                    self._ran(m, vcpu, vcpu.run_resumed_in_engine())
                continue
            other = self.loaded.get(p)
            direct = self._last_run is vcpu and not self._vmm_ran and other is vcpu and vcpu.blocked_until is None
            if other is not vcpu:                 # the pCPU changes hands
                if other is not None and other.paused:
                    other.preempt()               # the scheduler tick: exit, switch
                if self.timeline is not None:
                    self.timeline.cpus[p].hand_over(other, vcpu)
                if other is not None:
                    other.vcpu_put()
                vcpu.vcpu_load()
                self.loaded[p] = vcpu
            if self.timeline is not None:
                self.timeline.cpus[p].turn(vcpu)
            if vcpu.blocked_until is not None:
                vcpu.wake_up(vcpu.blocked_until)
            same_turn = self._in_turn(p, vcpu)
            if not same_turn:
                self.turns += 1
                self.last_turn[id(vcpu)] = self.turns
            vmm_at = NEVER if ev is None else ev[0]
            deadline = NEVER
            clocks[p] = vcpu.cpu.cycles           # only this pCPU's clock moved since the pick
            pick_bound, others_min = self._others(live, vcpu, clocks)
            if len(self.entries) > 1:             # a lone vCPU runs until it exits
                deadline = self._turn_deadline(vcpu, others_min)
                if self.shared[p] and same_turn:
                    deadline = min(deadline, self.owner[p][1])   # the same turn goes on
                vcpu.cpu.st.turn_deadline = min(deadline, self._sync_point(vcpu, others_min), vmm_at)
                self.owner[p] = (vcpu, deadline)
            else:                                 # ... or until the VMM's next event
                vcpu.cpu.st.turn_deadline = vmm_at
            fm = vcpu.fast_mmio
            if fm is not None:
                # What the engine needs to serve an exit of this vCPU exactly as this loop
                # would go on after it (host_kernel/fast_mmio.py): the vCPU stays picked
                # while it is behind every other one, its turn's deadline follows its time.
                # (A lone vCPU's turns are never "the same": their count orders nothing.)
                fm.arm(vcpu, pick_bound=pick_bound, vmm_at=vmm_at, multi=len(self.entries) > 1,
                       others_min=others_min, quantum=self.quantum, lookahead=self.lookahead, shared=self.shared[p], owner_deadline=deadline,
                       direct=direct and (same_turn or len(self.entries) == 1))
            m.vm.running = vcpu
            self._ran(m, vcpu, vcpu.run())
        for m in self.machines:
            if not m.vm.finished:
                m.finish("all-off")

    def _ran(self, m, vcpu, run) -> None:
        """The step after vcpu.run returned."""
        m.vm.running = None
        self._last_run, self._vmm_ran = vcpu, False
        fm = vcpu.fast_mmio
        if fm is not None:
            moved = fm.pull(vcpu)
            if moved is not None and len(self.entries) > 1:
                self.owner[self.pcpu_of[id(vcpu)]] = (vcpu, moved)
        self._after(m, vcpu, run)
        if m.cfg.stop_at_init and m.vm.first_el0 is not None and not m.vm.finished:
            m.finish("init", "the guest reached user space")
        if m.vm.finished or not vcpu.powered_on:
            vm_switch.release_orphans(self.host, vcpu.cpu.cycles)

    def _after(self, m, vcpu, run) -> None:
        r = run.exit_reason
        if r in (EXIT_PREEMPTED, EXIT_BLOCKED):
            return
        if r == EXIT_POWER_OFF:
            if not any(v.powered_on for v in m.vcpus):
                m.finish("all-off")
            return
        if r == KVM_EXIT_MMIO:
            m.user_mmio(vcpu)
        elif r == KVM_EXIT_SYSTEM_EVENT:
            m.system_event(run.system_event_type)
        elif r == KVM_EXIT_INSN_LIMIT:
            for mm in self.machines:              # the limit is the host's: everything stops
                if not mm.vm.finished:
                    stalls = vcpu.cpu.stalls
                    also = f" and {stalls} exception entries that retired none" if stalls else ""
                    mm.finish("insn-limit", f"guest stopped after {vcpu.cpu.insns} instructions{also} "
                                            f"(--max-insns {mm.cfg.max_insns})")
        elif r == KVM_EXIT_HALTED:
            m.finish("halted", run.message)
        else:
            raise AssertionError(f"unexpected exit reason {r}")
