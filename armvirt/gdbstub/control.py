"""Run control for the GDB stub, in all-stop mode as QEMU's: every pCPU has a debug
unit (engine/debug.py) and this is their controller.  It keeps what GDB asked for
(breakpoints, watchpoints, steps), decides at each hook whether the machine stops,
and hands every stop to the server, which reports it and serves GDB until it
resumes the guest.  Only one engine runs at a time, so a stop halts the whole
machine: nothing else executes and modeled time does not advance while GDB looks.

Time is one for all vCPUs: a vCPU cannot be held while another runs without
changing what the run does, so on every resume all vCPUs go on (a thread GDB left
stopped runs too), and a step ends before the next instruction the stepped vCPU
executes, whatever the others did meanwhile."""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.debug import DebugUnit

SIGINT, SIGTRAP = 2, 5
POLL_CYCLES = 20_000_000        # modeled cycles between looks at the connection while running
WATCH_KINDS = {2: (False, True, "watch"), 3: (True, False, "rwatch"), 4: (True, True, "awatch")}


@dataclass
class Stop:
    """Why the machine stopped, and for which vCPU (a T stop reply)."""
    signal: int
    vcpu: object
    reason: str = ""            # swbreak, hwbreak, watch, rwatch, awatch; "" for a step or an interrupt
    addr: int = 0
    silent: bool = False        # a stop GDB did not ask about (a new connection, -S)


@dataclass
class Step:
    vcpu: object
    pc: int                     # where it stood when GDB resumed it
    retired: int = 0            # instructions it retired in runs that ended with an exit
    base: int | None = None     # the pCPU's retired count when its current run began


@dataclass
class Watch:
    pid: int
    kind: int                   # Z2 write, Z3 read, Z4 access
    va: int
    length: int
    ranges: list = field(default_factory=list)  # host physical (lo, hi)


class RunControl:
    def __init__(self, threads, server):
        self.threads, self.server = threads, server
        self.cpus = threads.host.pcpus
        self.units = [DebugUnit(cpu, self) for cpu in self.cpus]
        self.breakpoints: dict[tuple[int, int], set[int]] = {}   # (pid, Z0 or Z1) -> addresses
        self.watches: dict[tuple, Watch] = {}                   # (pid, kind, va, length) -> Watch
        self.steps: dict[int, Step] = {}                         # id(vcpu) -> Step
        self.pending: Stop | None = None
        self._poll_due = [0] * len(self.cpus)

    # --- what GDB sets ------------------------------------------------------------------------
    def insert_breakpoint(self, pid: int, kind: int, addr: int) -> None:
        self.breakpoints.setdefault((pid, kind), set()).add(addr)

    def remove_breakpoint(self, pid: int, kind: int, addr: int) -> None:
        self.breakpoints.get((pid, kind), set()).discard(addr)

    def insert_watchpoint(self, pid: int, kind: int, va: int, length: int, ranges) -> None:
        self.watches[(pid, kind, va, length)] = Watch(pid, kind, va, length, list(ranges))

    def remove_watchpoint(self, pid: int, kind: int, va: int, length: int) -> None:
        self.watches.pop((pid, kind, va, length), None)

    def clear(self, pid: int | None = None) -> None:
        """Every breakpoint and watchpoint (of one process)."""
        for key in [k for k in self.breakpoints if pid is None or k[0] == pid]:
            del self.breakpoints[key]
        for key in [k for k in self.watches if pid is None or k[0] == pid]:
            del self.watches[key]

    def resume(self, stepping: list) -> None:
        """GDB lets the machine go; `stepping`: the vCPUs to stop after one instruction.
        The engines get their hooks now (GDB removes and reinserts everything around a
        stop: the hooks, and the translated code, change only when the set does)."""
        self.pending = None
        self.steps = {}
        for v in stepping:
            st = self.threads.state(v)
            self.steps[id(v)] = Step(v, st.get("pc"))
        attached = {p.pid for p in self.threads.processes if p.attached}
        addrs = set().union(*[a for (pid, _), a in self.breakpoints.items() if pid in attached])
        ranges = {(lo, hi, WATCH_KINDS[w.kind][0], WATCH_KINDS[w.kind][1])
                  for w in self.watches.values() if w.pid in attached for lo, hi in w.ranges}
        step_cpus = {id(s.vcpu.cpu) for s in self.steps.values()}
        for unit in self.units:
            unit.set_breakpoints(addrs)
            unit.set_watchpoints(ranges)
            unit.set_stepping(id(unit.cpu) in step_cpus)

    def detach_all(self) -> None:
        self.clear()
        self.resume([])
        for unit in self.units:
            unit.detach()

    def moved_blocks(self) -> int:
        return sum(u.moved_blocks for u in self.units)

    # --- engine.debug.Controller ----------------------------------------------------------------
    def _vcpu(self, cpu):
        v = self.threads.running_on(cpu)
        return v if v is not None and self.threads.is_attached(v) else None

    def gate(self, cpu, pc: int) -> int:
        vcpu = self._vcpu(cpu)
        stop = self.pending
        step = self.steps.get(id(vcpu)) if vcpu is not None else None
        if stop is None and step is not None and (step.retired > 0 or pc != step.pc):
            stop = Stop(SIGTRAP, vcpu)           # its instruction completed in an exit
        if stop is None and cpu.cycles >= self._poll_due[cpu.index]:
            self._poll_due[cpu.index] = cpu.cycles + POLL_CYCLES
            stop = self.server.poll(vcpu)
        if stop is not None:
            self.pending = None
            self.server.stop(stop)
            pc = cpu.pc()
            step = self.steps.get(id(vcpu)) if vcpu is not None else None
        if step is not None and step.base is None:
            step.base = cpu.debug.retired_before(pc)
        return pc

    def poll_at(self, cpu) -> int:
        return self._poll_due[cpu.index]

    def breakpoint(self, cpu, addr: int):
        vcpu = self._vcpu(cpu)
        if vcpu is None:
            return None
        pid = self.threads.pid(vcpu)
        for kind, reason in ((0, "swbreak"), (1, "hwbreak")):
            if addr in self.breakpoints.get((pid, kind), ()):
                return Stop(SIGTRAP, vcpu, reason, addr)
        return None

    def watch(self, cpu, is_write: bool, pa: int, size: int):
        vcpu = self._vcpu(cpu)
        if vcpu is None:
            return None
        pid = self.threads.pid(vcpu)
        for w in self.watches.values():
            read, write, reason = WATCH_KINDS[w.kind]
            if w.pid == pid and (write if is_write else read) and any(
                    pa <= hi and lo < pa + size for lo, hi in w.ranges):
                return Stop(SIGTRAP, vcpu, reason, w.va)
        return None

    def step(self, cpu, addr: int, retired: int):
        vcpu = self._vcpu(cpu)
        step = self.steps.get(id(vcpu)) if vcpu is not None else None
        if step is None or step.base is None:
            return None
        if step.retired + retired - step.base > 0 or addr != step.pc:
            return Stop(SIGTRAP, vcpu)           # the next instruction, or an exception vector
        return None

    def halted(self, cpu, pc: int, reason) -> None:
        if reason is None:                       # a poll: look at the connection
            self._poll_due[cpu.index] = cpu.cycles + POLL_CYCLES
            reason = self.server.poll(self._vcpu(cpu))
            if reason is None:
                return
        self.server.stop(reason)

    def left(self, cpu, pc: int, reason) -> None:
        vcpu = self._vcpu(cpu)
        step = self.steps.get(id(vcpu)) if vcpu is not None else None
        if step is not None and step.base is not None:
            step.retired += cpu.debug.retired_before(pc) - step.base
            step.base = None
        if reason is not None:
            self.pending = reason                # reported before the guest runs again
