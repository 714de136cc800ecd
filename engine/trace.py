"""Debug logging in the manner of QEMU's -d/-D: named categories, one line each;
and the timeline a trace file (--trace-out) is made from."""
from __future__ import annotations

import sys
from typing import TextIO

CATEGORIES = ("exits", "int", "mmio", "psci", "stage2", "timer", "vgic", "unimp", "guest_errors",
              "in_asm", "exec")

# `-d help`: one line per item, as QEMU's log items (every item of CATEGORIES has one).
HELP = {
    "exits": "show each exit to the hypervisor: reason, ESR_EL2, PC, FAR, cycle",
    "int": "show physical IRQs taken while the guest ran and exceptions injected into the guest",
    "mmio": "show guest MMIO accesses that trap (stage-2 data aborts on device regions)",
    "psci": "show PSCI and SMCCC calls and the system events they raise",
    "stage2": "show stage-2 page mappings made on guest faults",
    "timer": "show timer activity: WFI blocking until the next deadline",
    "vgic": "show virtual GIC activity",
    "unimp": "log unimplemented functionality",
    "guest_errors": "log when the guest does something invalid (eg accessing a non-existent register)",
    # QEMU's wording; both put a Python hook on every block (about 40x slower)
    "in_asm": "show target assembly code for each compiled TB",
    "exec": "show trace before each executed TB (lots of logs)",
}


class Tracer:
    def __init__(self, categories: set[str] | None = None, out: TextIO | None = None,
                 timeline: "Timeline | None" = None):
        self.categories = categories or set()
        self.out = out or sys.stderr
        self.timeline = timeline        # --trace-out: every charged step with its modeled time
        self.symbols: dict = {}         # VTTBR_EL2 -> pc -> symbol name (-d in_asm, exec)

    def on(self, cat: str) -> bool:
        return cat in self.categories

    def log(self, cat: str, msg: str) -> None:
        if cat in self.categories:
            self.out.write(f"[{cat}] {msg}\n")

    def symbol(self, vttbr: int, pc: int) -> str:
        lookup = self.symbols.get(vttbr)
        return lookup(pc) if lookup is not None else ""


NULL = Tracer()


# --- the timeline -------------------------------------------------------------------
# Records, in the order they happen on one pCPU, as tuples whose first item is the kind.
# Times are that pCPU's modeled cycles.  The ledger's steps are the same Step objects the
# tables sum: a trace adds no second accounting, it only notes when each one happened.
STEP = "step"       # (STEP, end, step, actor): one charged step, ending at `end`
STEPS = "steps"     # (STEPS, end, steps, actor): a fixed sequence, the last ending at `end`
AT = "at"           # (AT, start, step, actor): a step that starts at `start` (the I/O back end
                    # on its own pCPU, the vIRQ entry the core takes after the ERET)
IDLE = "idle"       # (IDLE, start, cycles, actor): time passed with nothing executed
TRAP = "trap"       # (TRAP, cycles, insns, actor): an exception to EL2 ends guest execution
ENTRY = "entry"     # (ENTRY, cycles, insns, actor): ERET into the guest
EXIT = "exit"       # (EXIT, t_trap, name, exit, actor): the lowvisor's Exit, named by the host
LRS = "lrs"         # (LRS, cycles, lr values, actor): list registers written before an entry
HAND = "hand"       # (HAND, cycles, previous vCPU, next vCPU): the pCPU changes hands
TURN = "turn"       # (TURN, cycles, vCPU): the scheduler runs this vCPU now


class CpuTrace:
    """One pCPU's records.  It stands in as the ledger's step list while a trace is
    taken (Ledger.steps), so a charge costs nothing more when no trace is."""
    __slots__ = ("cpu", "records", "actor", "_idle")

    def __init__(self, cpu):
        self.cpu = cpu
        self.records: list[tuple] = []
        self.actor = None              # the vCPU the pCPU works for; None: the host itself
        self._idle = cpu.idle_cycles

    def now(self) -> int:
        return self.cpu.cycles

    def _idle_before(self, start: int) -> None:
        """Idle time (PhysicalCpu.advance_idle) since the last record ended at `start`:
        nothing else moves a clock between two records."""
        idle = self.cpu.idle_cycles
        if idle != self._idle:
            d, self._idle = idle - self._idle, idle
            self.records.append((IDLE, start - d, d, self.actor))

    # the ledger's step list
    def append(self, step) -> None:
        now = self.now()
        self._idle_before(now - step.cycles)
        self.records.append((STEP, now, step, self.actor))

    def extend(self, steps) -> None:
        now = self.now()
        self._idle_before(now - sum(s.cycles for s in steps))
        self.records.append((STEPS, now, tuple(steps), self.actor))

    def place(self, step, at: int) -> None:
        self.records.append((AT, at, step, self.actor))

    def tee(self) -> "TeeSteps":
        """A segment's step list (trap-path recording) that also lands here."""
        return TeeSteps(self)

    # markers
    def _mark(self, kind: str) -> None:
        now = self.now()
        self._idle_before(now)
        self.records.append((kind, now, self.cpu.insns, self.actor))

    def trap(self) -> None:
        self._mark(TRAP)

    def entry(self) -> None:
        self._mark(ENTRY)

    def exit(self, name: str, ex) -> None:
        self.records.append((EXIT, ex.t_trap, name, ex, self.actor))

    def lrs(self, values) -> None:
        self.records.append((LRS, self.now(), tuple(values), self.actor))

    def hand_over(self, previous, nxt) -> None:
        """The scheduler gives the pCPU to `nxt`: the switch (vcpu_put, vcpu_load) is the host's."""
        now = self.now()
        self._idle_before(now)
        self.records.append((HAND, now, previous, nxt))
        self.actor = None

    def turn(self, vcpu) -> None:
        now = self.now()
        self._idle_before(now)
        self.records.append((TURN, now, vcpu))
        self.actor = vcpu


class TeeSteps(list):
    """A recorded segment's steps, also handed to the pCPU's trace."""
    __slots__ = ("trace",)

    def __init__(self, trace: CpuTrace):
        super().__init__()
        self.trace = trace

    def append(self, step) -> None:
        super().append(step)
        self.trace.append(step)

    def extend(self, steps) -> None:
        steps = tuple(steps)
        super().extend(steps)
        self.trace.extend(steps)

    def place(self, step, at: int) -> None:
        super().append(step)
        self.trace.place(step, at)


class Timeline:
    """Every pCPU's records for one host (armvirt.trace_events turns them into a file)."""

    def __init__(self):
        self.cpus: list[CpuTrace] = []
        self.host = None                 # the host whose pCPUs these are (it attaches them)

    def attach(self, cpu, ledger) -> CpuTrace:
        t = CpuTrace(cpu)
        self.cpus.append(t)
        ledger.trace_to(t)
        return t
