"""Cycle charging.  Every modeled operation charges named cycles here; the sum
moves the pCPU's virtual clock, and a recording captures the ordered steps of
one trap path so a table can be built from what really ran."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

GUEST = "guest EL1"
HW = "hardware"
LOWVISOR = "lowvisor EL2"
HIGHVISOR = "highvisor EL1"
USER = "VMM user space"


@dataclass(frozen=True)
class Step:
    where: str
    what: str
    cycles: int
    group: str = ""      # register group, for the world-switch table
    kind: str = ""       # "save" / "restore" / "" for other steps
    regs: int = 0


class Ledger:
    def __init__(self, cpu, costs: Mapping[str, int]):
        self.cpu = cpu
        self.st = cpu.st
        self.costs = costs
        self.steps: Optional[list[Step]] = None
        self.trace = None    # engine.trace.CpuTrace while a trace is taken (--trace-out)

    def cost(self, name: str) -> int:
        return self.costs[name]

    def charge(self, where: str, what, cycles: int, group: str = "", kind: str = "",
               regs: int = 0) -> None:
        """`what` is a label, or a callable making one: labels are only built when recorded."""
        self.st.charged += cycles
        if self.steps is not None:
            self.steps.append(Step(where, what() if callable(what) else what, cycles, group, kind, regs))

    def charge_steps(self, total: int, steps: tuple) -> None:
        """Charge a fixed sequence of steps (precomputed from declarations) in one go."""
        self.st.charged += total
        if self.steps is not None:
            self.steps.extend(steps)

    # Designs other than split mode run the same call sites elsewhere (el2/design.py).
    where_map: Mapping[str, str] = {}
    key_map: Mapping[str, tuple] = {}

    def charge_named(self, where: str, what, name: str) -> None:
        """Charge a named primitive or host software path from the profile."""
        if name in self.key_map:
            m = self.key_map[name]
            if callable(m):                  # a composite path (e.g. type 1's ioreq to dom0)
                m(self)
                return
            name, what = m
        self.st.charged += self.costs[name]
        if self.steps is not None:
            self.steps.append(Step(self.where_map.get(where, where), what() if callable(what) else what,
                                   self.costs[name]))

    def note(self, where: str, what, cycles: int, at: Optional[int] = None) -> None:
        """Record a step whose cycles the clock already holds (a retired guest instruction),
        or, with `at` (when it starts), one on another pCPU's clock (the I/O back end) or
        one the hardware charges after the call (the vIRQ entry taken by the core)."""
        if self.steps is not None:
            step = Step(self.where_map.get(where, where), what() if callable(what) else what, cycles)
            if at is None or self.trace is None:
                self.steps.append(step)
            else:
                self.steps.place(step, at)

    def steps_of(self, *entries: tuple) -> tuple[int, tuple]:
        """Precompute a fixed sequence: entries of (where, what, cost name[, group, kind, regs])."""
        steps = tuple(Step(e[0], e[1], self.costs[e[2]], *e[3:]) for e in entries)
        return sum(st.cycles for st in steps), steps

    # Recording: the step stream is cut into one segment per trap, from the trapping
    # instruction to the ERET back into the guest, so a table shows one real path.
    segments: Optional[list["Segment"]] = None

    def start_recording(self) -> list["Segment"]:
        self.segments = []
        return self.segments

    def begin_segment(self) -> None:
        """A trap: the exception to EL2 ends guest execution."""
        if self.trace is not None:
            self.trace.trap()
        if self.segments is not None:
            self.steps = [] if self.trace is None else self.trace.tee()
            self.segments.append(Segment(self.steps))

    def tag(self, tag: str) -> None:
        if self.segments:
            self.segments[-1].tag = tag

    def stop_recording(self) -> list["Segment"]:
        segs, self.segments, self.steps = self.segments or [], None, self.trace
        return segs

    def trace_to(self, trace) -> None:
        """Take a trace: every step from now on also goes to `trace` with its time."""
        self.trace = trace
        if self.segments is None:
            self.steps = trace


@dataclass
class Segment:
    steps: list
    tag: str = ""

    @property
    def total(self) -> int:
        return sum(s.cycles for s in self.steps)
