"""Trace files in the Trace Event Format (the JSON that Chrome writes and Perfetto
imports: ui.perfetto.dev, Open trace file), made from a host's timeline
(engine.trace): the ledger's own steps, each at the modeled time it was charged.

Tracks (pid = a process, tid = a thread in Perfetto's view):
- host: one thread per pCPU.  Which vCPU it holds (vcpu_load to vcpu_put), the
  vCPU and VM switches between them with their vcpu_put/vcpu_load steps, and the
  time it idles.
- one process per VM: one thread per vCPU.  Guest execution, and each exit named
  as KVM names it (HVC64, DABT_LOW, SYS64, WFx, IRQ ...) from the trap to the
  next entry; inside an exit, where each part runs (hardware, lowvisor EL2,
  highvisor EL1, VMM user space ...), inside those the charged steps (the world
  switch's register groups among them), and the time the vCPU waits (blocked in
  WFI, descheduled).  Instants: injected virtual interrupts, kicks; a counter of
  the list registers in use.  The I/O back end (a vhost worker on a pCPU of its
  own) is a thread of the VM; under type 1, dom0 is a process of its own.

Times are cycles at the profile's clock, written as microseconds (`ts`, `dur`)
rounded to whole nanoseconds, the resolution Perfetto keeps, from one rounding
of each boundary: a slice nested in cycles stays nested in the file."""
from __future__ import annotations

import bisect
import json
from contextlib import contextmanager
from dataclasses import dataclass, field

from engine import trace as T
from engine.ledger import GUEST, Step
from el2 import syndrome as syn
from gic.lr import LR_STATE_PENDING, ListReg
from gic.v3_hyp import lr_hw, lr_state, lr_vintid
from host_kernel.bench_io import BACKEND_PCPU
from host_kernel.dom0 import BACKEND_SIDE
from host_kernel.ipi import GIC


@dataclass
class Slice:
    start: int                  # cycles
    end: int
    name: str
    cat: str
    args: dict = field(default_factory=dict)
    children: list = field(default_factory=list)


class Placed:
    """A step at its place in time (cycles)."""
    __slots__ = ("start", "end", "step")

    def __init__(self, start: int, end: int, step: Step):
        self.start, self.end, self.step = start, end, step


class Layout:
    """Places steps one after another inside a parent slice.  The ledger's times are
    consistent by construction; what had to be moved to keep slices nested is counted
    (`moved`, in the file's otherData) so a test can insist it is zero."""

    def __init__(self):
        self.moved = 0

    def place(self, start: int, end: int, items: list[Placed]) -> list[Placed]:
        cursor = start
        for it in items:
            if it.start < cursor or it.end > end:
                self.moved += 1
                s = max(it.start, cursor)
                e = min(s + it.end - it.start, end)
                it.start, it.end = min(s, e), e
            cursor = it.end
        return items

    def grouped(self, parent: Slice, items: list[Placed], gap_name) -> None:
        """Children of `parent`: runs of contiguous steps at one location (depth +1) holding
        the steps (depth +2), and the gaps between them, named by `gap_name(start, end)`."""
        cursor, group = parent.start, None
        for it in self.place(parent.start, parent.end, items):
            if it.start > cursor:
                parent.children.append(Slice(cursor, it.start, gap_name(cursor, it.start), "wait"))
                group = None
            if group is None or group.cat != it.step.where:
                group = Slice(it.start, it.end, it.step.where, it.step.where, {"cycles": 0})
                parent.children.append(group)
            group.end = it.end
            group.args["cycles"] += it.step.cycles
            group.children.append(it)
            cursor = it.end
        if cursor < parent.end:
            parent.children.append(Slice(cursor, parent.end, gap_name(cursor, parent.end), "wait"))


def expand(rec) -> list[Placed]:
    """The steps of a STEP / STEPS / AT record with their times."""
    kind = rec[0]
    if kind == T.STEP:
        st = rec[2]
        return [Placed(rec[1] - st.cycles, rec[1], st)]
    if kind == T.AT:
        st = rec[2]
        return [Placed(rec[1], rec[1] + st.cycles, st)]
    out, t = [], rec[1] - sum(s.cycles for s in rec[2])
    for st in rec[2]:
        out.append(Placed(t, t + st.cycles, st))
        t += st.cycles
    return out


def lr_injections(values, gic_version: int) -> list[tuple[int, dict]]:
    """(vINTID, details) of the list registers written pending: interrupts injected."""
    out = []
    for i, v in enumerate(values):
        if gic_version == 3:
            intid, state, hw = lr_vintid(v), lr_state(v), lr_hw(v)
        else:
            lr = ListReg.decode(v)
            intid, state, hw = lr.vintid, lr.state, lr.hw
        if state & LR_STATE_PENDING:
            out.append((intid, {"LR": i, "state": state, "HW": int(hw)}))
    return out


class Worker:
    """A back end on a pCPU of its own: its steps run one after another."""

    def __init__(self, name: str):
        self.name, self.items = name, []

    def slices(self, layout: Layout) -> list[Slice]:
        items = sorted(self.items, key=lambda it: it.start)
        out, cursor = [], 0
        for it in items:                      # a second request waits for the first
            s = max(it.start, cursor)
            out.append(Placed(s, s + it.end - it.start, it.step))
            cursor = s + it.end - it.start
        top = Slice(0, cursor, "", "")
        layout.grouped(top, out, lambda a, b: "")
        return [c for c in top.children if c.cat != "wait"]


class VcpuTrack:
    """One vCPU: guest execution, exits, what each exit did and waited for."""

    def __init__(self, vcpu, layout: Layout, worker_of):
        self.vcpu, self.layout, self.worker_of = vcpu, layout, worker_of
        self.slices: list[Slice] = []
        self.instants: list[tuple[int, str, str, dict]] = []
        self.counter: list[tuple[int, int]] = []
        self.mode = None              # None (not entered yet), "guest", "exit"
        self.open: Slice | None = None
        self.items: list[Placed] = []
        self.insns0 = 0
        self.last_guest: Slice | None = None
        self.handed_away: list[int] = []
        self.waited_for: list[tuple[int, int, str]] = []
        self.lrs_in_use = 0
        self.last = 0

    # records
    def steps(self, placed: list[Placed]) -> None:
        for it in placed:
            st = it.step
            self.last = max(self.last, it.end)
            if st.cycles == 0:
                self.instants.append((it.start, st.what, st.where, {}))
                continue
            worker = self.worker_of(self.vcpu, st.where)
            if worker is not None:                 # runs on the back end's pCPU
                worker.items.append(it)
                self.waited_for.append((it.start, it.end, worker.name))
            elif self.mode == "exit" and st.where == GUEST and it.end <= self.open.start \
                    and self.last_guest is not None:
                self.last_guest.children.append(it)     # the trapping instruction
            else:
                if self.open is None:
                    self.open = Slice(it.start, it.start, "first entry", "host")
                self.items.append(it)

    def trap(self, t: int, insns: int) -> None:
        if self.open is not None:
            self._close(t, insns)
        self._counter(t, 0)
        self.mode, self.open, self.items = "exit", Slice(t, t, "exit", "exit"), []
        self.handed_away, self.waited_for = [], []      # what this exit may wait for

    def exit(self, t: int, name: str, ex) -> None:
        if self.mode == "guest":                   # no trap: the instruction limit stopped it
            keep = [it for it in self.items if it.end <= t]
            later = [it for it in self.items if it.end > t]
            self.items = keep
            self._close(t, None)
            self.mode, self.open, self.items = "exit", Slice(t, t, "exit", "exit"), later
        if self.open is not None:
            self.open.name = "instruction limit" if name == "LIMIT" else name
            args = self.open.args = {"ESR_EL2": f"{ex.esr:#010x}", "EC": f"{ex.ec:#04x}", "ELR_EL2": f"{ex.elr:#x}"}
            if ex.ec in (syn.EC_DABT_LOW, syn.EC_IABT_LOW):     # FAR/HPFAR are UNKNOWN for other classes
                args.update(FAR_EL2=f"{ex.far:#x}", HPFAR_EL2=f"{ex.hpfar:#x}")

    def entry(self, t: int, insns: int) -> None:
        if self.open is not None:
            self._close(t, insns)
        self.mode, self.open, self.items, self.insns0 = "guest", Slice(t, t, "guest", GUEST), [], insns

    def lrs(self, t: int, values, gic_version: int) -> None:
        for intid, args in lr_injections(values, gic_version):
            self.instants.append((t, f"inject vIRQ {intid}", "vgic", args))
        self._counter(t, len(values))

    def handed(self, t: int) -> None:
        self.handed_away.append(t)

    def _counter(self, t: int, n: int) -> None:
        if n != self.lrs_in_use or (n and not self.counter):
            self.counter.append((t, n))
            self.lrs_in_use = n

    # slices
    def _close(self, t: int, insns) -> None:
        s, self.open = self.open, None
        s.end = max(t, s.start)
        if self.mode == "guest":
            s.children += self.layout.place(s.start, s.end, self.items)
            if insns is not None:
                s.args["instructions"] = insns - self.insns0
            self.last_guest = s
        else:
            self.layout.grouped(s, self.items, lambda a, b, exit=s.name: self._wait_name(exit, a, b))
        s.args["cycles"] = s.end - s.start
        self.items = []
        self.slices.append(s)

    def _wait_name(self, exit_name: str, a: int, b: int) -> str:
        for s, e, name in self.waited_for:
            if s < b and e > a:
                return f"waiting for {name}"
        if any(a <= t <= b for t in self.handed_away):
            return "descheduled"
        return "blocked in WFI" if exit_name == "WFx" else "waiting"

    def finish(self) -> None:
        if self.open is not None:
            self._close(max([self.last, self.open.start] + [it.end for it in self.items]), None)


class PcpuTrack:
    """One pCPU: the vCPU it holds, the switches between vCPUs, idle time."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.held: list[Slice] = []           # vcpu_load .. vcpu_put of one vCPU
        self.switches: list[Slice] = []
        self.idle: list[Slice] = []
        self.resident: Slice | None = None
        self.switch: Slice | None = None
        self.items: list[Placed] = []
        self.last = 0

    def hand(self, t: int, prev, nxt) -> None:
        self._close_resident(t)
        if prev is None:
            name = f"vcpu_load {nxt.tag}"
        else:
            name = f"{'vCPU' if prev.vm is nxt.vm else 'VM'} switch {prev.tag} -> {nxt.tag}"
        self.switch, self.items = Slice(t, t, name, "sched"), []

    def turn(self, t: int, vcpu) -> None:
        self._close_switch(t)
        if self.resident is None:
            self.resident = Slice(t, t, vcpu.tag, "sched", {"vCPU": vcpu.index, "VM": vcpu.vm.name})

    def steps(self, placed: list[Placed]) -> None:
        for it in placed:
            self.last = max(self.last, it.end)
            if self.switch is None:          # the host's own work outside a switch: none today
                self.switch, self.items = Slice(it.start, it.start, "host", "host"), []
            self.items.append(it)

    def idle_for(self, start: int, cycles: int) -> None:
        self.idle.append(Slice(start, start + cycles, "idle", "idle", {"cycles": cycles}))
        self.last = max(self.last, start + cycles)

    def _close_switch(self, t: int) -> None:
        if self.switch is not None:
            s, self.switch = self.switch, None
            s.end = max([t, s.start] + [it.end for it in self.items])
            self.layout.grouped(s, self.items, lambda a, b: "waiting")
            self.switches.append(s)

    def _close_resident(self, t: int) -> None:
        if self.resident is not None:
            r, self.resident = self.resident, None
            r.end = max(t, r.start)
            self.held.append(r)

    def finish(self, t_end: int) -> list[Slice]:
        self._close_switch(self.last)
        self._close_resident(max(t_end, self.last))
        top = self.held + self.switches
        starts = [r.start for r in self.held]          # in time order, not overlapping
        for idle in self.idle:       # idle while a vCPU is loaded nests in its slice
            i = bisect.bisect_right(starts, idle.start) - 1
            home = self.held[i] if i >= 0 and idle.end <= self.held[i].end else None
            (home.children if home is not None else top).append(idle)
        return top


class TraceWriter:
    """One trace file; `add` once per host's run (compare adds one per design)."""

    def __init__(self):
        self.events: list[tuple] = []
        self.meta: list[dict] = []
        self._pid = 0
        self._tid = 1000
        self.layout = Layout()
        self.runs: list[dict] = []
        self._quoted: dict[str, str] = {}

    def _process(self, name: str, sort: int) -> int:
        self._pid += 1
        self.meta += [{"name": "process_name", "ph": "M", "pid": self._pid, "tid": 0, "args": {"name": name}},
                      {"name": "process_sort_index", "ph": "M", "pid": self._pid, "tid": 0,
                       "args": {"sort_index": sort}}]
        return self._pid

    def _thread(self, pid: int, name: str, sort: int) -> int:
        self._tid += 1
        self.meta += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": self._tid, "args": {"name": name}},
                      {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": self._tid,
                       "args": {"sort_index": sort}}]
        return self._tid

    def add(self, timeline: T.Timeline, cpu_hz: int, label: str = "") -> None:
        """The timeline of one host's run; `label` names it (compare: the design)."""
        host, hz = timeline.host, cpu_hz
        base = 100 * len(self.runs)
        prefix = f"{label}: " if label else ""
        ns = lambda c: (c * 1_000_000_000 + hz // 2) // hz        # noqa: E731
        self.runs.append({"label": label, "cpu_hz": cpu_hz})
        host_pid = self._process(f"{prefix}host", base)
        cpu_tid = {id(c): self._thread(host_pid, f"pCPU {c.index}", c.index) for c in host.pcpus}
        vm_pid, vcpu_tid, workers = {}, {}, {}
        for i, vm in enumerate(host.vms):
            vm_pid[id(vm)] = self._process(f"{prefix}VM {vm.name}", base + 1 + i)
            for v in vm.vcpus:
                vcpu_tid[id(v)] = self._thread(vm_pid[id(vm)], f"vcpu{v.index}", v.index)
        dom0 = {}

        def worker_of(vcpu, where):
            if where in BACKEND_PCPU:
                key = id(vcpu.vm)
                if key not in workers:
                    workers[key] = (Worker("the I/O back end"), vm_pid[key], "I/O back end (vhost, own pCPU)")
                return workers[key][0]
            if where == GIC and vcpu.vm.host.design.name != "type1":   # an SGI between pCPUs
                key = ("gic", id(vcpu.vm))
                if key not in workers:
                    workers[key] = (Worker("the GIC distributor"), vm_pid[id(vcpu.vm)], "GIC distributor (SGIs)")
                return workers[key][0]
            if where in BACKEND_SIDE or where == GIC:      # type 1: on dom0's side
                if not dom0:
                    pid = self._process(f"{prefix}dom0", base + 99)
                    dom0["w"] = (Worker("dom0"), pid, "dom0 vCPU (own pCPU)")
                return dom0["w"][0]
            return None

        vtracks = {id(v): VcpuTrack(v, self.layout, worker_of) for vm in host.vms for v in vm.vcpus}
        ptracks = {}
        for ct in timeline.cpus:
            pt = ptracks[id(ct.cpu)] = PcpuTrack(self.layout)
            for rec in ct.records:
                kind = rec[0]
                if kind in (T.STEP, T.STEPS, T.AT):
                    placed, actor = expand(rec), rec[3]
                    (vtracks[id(actor)].steps if actor is not None else pt.steps)(placed)
                elif kind == T.IDLE:
                    pt.idle_for(rec[1], rec[2])
                elif kind == T.TRAP:
                    vtracks[id(rec[3])].trap(rec[1], rec[2])
                elif kind == T.ENTRY:
                    vtracks[id(rec[3])].entry(rec[1], rec[2])
                elif kind == T.EXIT:
                    vtracks[id(rec[4])].exit(rec[1], rec[2], rec[3])
                elif kind == T.LRS:
                    vtracks[id(rec[3])].lrs(rec[1], rec[2], rec[3].vm.gic_version)
                elif kind == T.HAND:
                    if rec[2] is not None:
                        vtracks[id(rec[2])].handed(rec[1])
                    pt.hand(rec[1], rec[2], rec[3])
                elif kind == T.TURN:
                    pt.turn(rec[1], rec[2])
            self._emit(pt.finish(ct.cpu.cycles), host_pid, cpu_tid[id(ct.cpu)], ns)
        for vm in host.vms:
            for v in vm.vcpus:
                vt = vtracks[id(v)]
                vt.finish()
                pid, tid = vm_pid[id(vm)], vcpu_tid[id(v)]
                self._emit(vt.slices, pid, tid, ns)
                for t, name, cat, args in vt.instants:
                    self._event(ns(t), {"name": name, "cat": cat, "ph": "i", "s": "t", "ts": ns(t) / 1000,
                                        "pid": pid, "tid": tid, "args": args})
                for t, n in vt.counter:
                    self._event(ns(t), {"name": "LRs in use", "ph": "C", "ts": ns(t) / 1000,
                                        "pid": pid, "tid": tid, "args": {f"vcpu{v.index}": n}})
        for w, pid, name in list(workers.values()) + list(dom0.values()):
            self._emit(w.slices(self.layout), pid, self._thread(pid, name, 99), ns)

    def _emit(self, slices: list, pid: int, tid: int, ns, depth: int = 0) -> None:
        """Slices as X events, their children after them; a Placed step is a leaf (its
        location is its parent's name; its args: cycles, and registers for a world-switch
        register group)."""
        q, out = self._quote, self.events
        track = f'"pid":{pid},"tid":{tid}'
        for s in slices:
            a, b = ns(s.start), ns(s.end)
            d = b - a
            if type(s) is Placed:
                st = s.step
                args = f'"cycles":{st.cycles},"registers":{st.regs}' if st.group else f'"cycles":{st.cycles}'
                out.append((a, 0, -d, depth, len(out), f'{{"name":{q(st.what)},"ph":"X","ts":{a // 1000}.'
                            f'{a % 1000:03d},"dur":{d // 1000}.{d % 1000:03d},{track},"args":{{{args}}}}}'))
                continue
            args = f',"args":{json.dumps(s.args, separators=(",", ":"))}' if s.args else ""
            out.append((a, 0, a - b, depth, len(out), f'{{"name":{q(s.name)},"cat":{q(s.cat)},"ph":"X",'
                                                      f'"ts":{_us(a)},"dur":{_us(b - a)},{track}{args}}}'))
            self._emit(s.children, pid, tid, ns, depth + 1)

    def _quote(self, text: str) -> str:
        q = self._quoted.get(text)
        if q is None:
            q = self._quoted[text] = json.dumps(text)
        return q

    def _event(self, t: int, ev: dict) -> None:
        """An instant or counter: after the slices that start at the same time."""
        self.events.append((t, 1, 0, 0, len(self.events), json.dumps(ev, separators=(",", ":"))))

    def text(self) -> str:
        """The file: metadata, then events sorted by start, a parent before its children
        (the longer first), instants and counters after the slices of the same time."""
        self.events.sort(key=lambda e: e[:5])
        meta = ",".join(json.dumps(m, separators=(",", ":")) for m in self.meta)
        other = json.dumps({"generator": "armvirt", "time": "modeled cycles at the profile's clock, in us",
                            "runs": self.runs, "moved_to_nest": self.layout.moved}, separators=(",", ":"))
        body = ",".join(e[5] for e in self.events)
        return f'{{"traceEvents":[{meta}{"," if meta and body else ""}{body}],"otherData":{other}}}'

    def write(self, f) -> int:
        """Write to the text file `f`; returns its size in bytes."""
        text = self.text()
        f.write(text)
        return len(text)


def _us(n: int) -> str:
    """Whole nanoseconds as microseconds, exactly (no float rounding on the way)."""
    return f"{n // 1000}.{n % 1000:03d}"


@contextmanager
def tracing(writer: "TraceWriter | None", cpu_hz: int, label: str = ""):
    """A Tracer for one host's run whose timeline goes into `writer` when the run is
    over (without a writer: NULL, no trace)."""
    if writer is None:
        yield T.NULL
        return
    trace = T.Tracer(timeline=T.Timeline())
    yield trace
    writer.add(trace.timeline, cpu_hz, label)
