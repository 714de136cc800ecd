"""Exit statistics as KVM's tools show them: the report of `perf kvm stat report`
(tools/perf/builtin-kvm.c print_result, arm64 names from kvm_arm_exception_class)
and the live view of kvm_stat (tools/kvm/kvm_stat).

Times are modeled: a sample is the cycles from a vCPU's exit to its next entry
(host_kernel.stats), printed in microseconds at the profile's CPU clock as perf
prints nanoseconds / 1000.  Nothing here reads the host clock except the live
view's choice of when to redraw, which the model never sees."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence, TextIO

from armvirt import report
from host_kernel.stats import ExitStat, ExitStats

# perf kvm stat report -k: "sample" sorts by the number of samples, "time" by the
# average time (builtin-kvm.c keys[]: sample -> count, time -> mean), largest first.
SORT_KEYS: dict[str, Callable[[ExitStat], float]] = {"sample": lambda s: s.count, "time": lambda s: s.mean}
DECODE_STR_LEN = 20          # tools/perf/arch/arm64/util/kvm-stat.c decode_str_len


@dataclass(frozen=True)
class Source:
    """One VM's samples: its name and one ExitStats per vCPU (index = vCPU id)."""
    vm: str
    vcpus: Sequence[ExitStats]


def gather(sources: Sequence[Source], vcpu: int | None = None) -> dict[str, ExitStat]:
    """The events of the chosen vCPU (perf --vcpu N), or of all vCPUs, summed over the VMs."""
    out: dict[str, ExitStat] = {}
    for src in sources:
        chosen = src.vcpus if vcpu is None else src.vcpus[vcpu:vcpu + 1]
        for st in chosen:
            for name, s in st.by_reason.items():
                out.setdefault(name, ExitStat()).merge(s)
    return out


def ordered(events: dict[str, ExitStat], key: str = "sample") -> list[tuple[str, ExitStat]]:
    """Largest first by perf's key; equal keys in name order (perf's order there is its
    hash table's, so any fixed order is as faithful)."""
    k = SORT_KEYS[key]
    return sorted(events.items(), key=lambda kv: (-k(kv[1]), kv[0]))


def _target(vm: str | None, vcpu: int | None) -> str:
    """print_vcpu_info: system-wide is "all VMs"; perf names a pid there, armvirt the guest."""
    who = "all VMs" if vm is None else f"guest {vm}"
    return f"Analyze events for {who}, {'all VCPUs' if vcpu is None else f'VCPU {vcpu}'}:"


def perf_report(events: dict[str, ExitStat], cpu_hz: int, key: str = "sample",
                vm: str | None = None, vcpu: int | None = None) -> str:
    """The text `perf kvm stat report` prints, line for line."""
    us = 1e6 / cpu_hz                      # microseconds per cycle
    rows = ordered(events, key)
    total_count = sum(s.count for _, s in rows)
    total_time = sum(s.total for _, s in rows)
    out = ["", "", _target(vm, vcpu), "",
           f"{'VM-EXIT':>{DECODE_STR_LEN}} {'Samples':>10} {'Samples%':>9} {'Time%':>9} "
           f"{'Min Time':>11} {'Max Time':>11} {'Avg time':>16} ", ""]
    for name, s in rows:
        out.append(f"{name:>{DECODE_STR_LEN}} {s.count:10d} {100 * s.count / total_count:8.2f}% "
                   f"{100 * s.total / total_time if total_time else 0.0:8.2f}% "
                   f"{s.min * us:9.2f}us {s.max * us:9.2f}us "
                   f"{s.mean * us:9.2f}us ( +-{s.rel_stddev():7.2f}% )")
    out += ["", f"Total Samples:{total_count}, Total events handled time:{total_time * us:.2f}us.", ""]
    return "\n".join(out)


def report_rows(events: dict[str, ExitStat], cpu_hz: int, key: str = "sample") -> list[dict]:
    """The same columns for tabulate formats and JSON (times in microseconds)."""
    us = 1e6 / cpu_hz
    rows = ordered(events, key)
    n = sum(s.count for _, s in rows) or 1
    t = sum(s.total for _, s in rows) or 1
    return [{"VM-EXIT": name, "Samples": s.count, "Samples%": round(100 * s.count / n, 2),
             "Time%": round(100 * s.total / t, 2), "Min Time": round(s.min * us, 2),
             "Max Time": round(s.max * us, 2), "Avg time": round(s.mean * us, 2),
             "+-%": round(s.rel_stddev(), 2)} for name, s in rows]


def format_report(sources: Sequence[Source], cpu_hz: int, fmt: str = "simple", key: str = "sample",
                  vcpu: int | None = None, vm: str | None = None) -> str:
    """perf's text for the default format; the same rows as a table for the others."""
    events = gather(sources, vcpu)
    if fmt == "simple":
        return perf_report(events, cpu_hz, key, vm, vcpu)
    return report.table(report_rows(events, cpu_hz, key), fmt, title=_target(vm, vcpu))


# --- kvm_stat ----------------------------------------------------------------------
class LiveView:
    """kvm_stat's screen for a running armvirt host: kvm_exit and, below it, one child
    event per exit reason (kvm_stat's drill-down, `x`), Total, %Total, and CurAvg/s,
    the rate since the previous frame per modeled second.  Samples drive it: every
    `check_every` exits it looks whether `delay` host seconds passed and redraws."""
    LABEL = 40

    def __init__(self, sources: Sequence[Source], clock: Callable[[], int], cpu_hz: int, out: TextIO,
                 delay: float = 3.0, vm: str | None = None, live: bool = True, check_every: int = 64):
        self.sources, self.clock, self.cpu_hz, self.out = sources, clock, cpu_hz, out
        self.delay, self.vm, self.live, self.check_every = delay, vm, live, check_every
        self._since_check = 0
        self._next_draw = 0.0
        self._last = ({}, 0)               # counts and modeled cycles at the previous frame
        if live:
            for src in sources:
                for st in src.vcpus:
                    st.listener = self._on_sample

    def _on_sample(self) -> None:
        self._since_check += 1
        if self._since_check < self.check_every:
            return
        self._since_check = 0
        now = time.monotonic()             # when to redraw only; the model never sees it
        if now >= self._next_draw:
            self._next_draw = now + self.delay
            self.out.write("\x1b[H\x1b[2J" + self.frame() + "\n")
            self.out.flush()

    def counts(self) -> dict[str, int]:
        return {name: s.count for name, s in gather(self.sources).items()}

    def frame(self) -> str:
        """One screen: the header, the events by (change, total), the Total line."""
        counts, cycles = self.counts(), self.clock()
        prev, prev_cycles = self._last
        self._last = (counts, cycles)
        seconds = (cycles - prev_cycles) / self.cpu_hz
        rate = (lambda d: str(int(round(d / seconds))) if d and seconds > 0 else "")
        total = sum(counts.values())
        delta = {k: v - prev.get(k, 0) for k, v in counts.items()}
        head = "kvm statistics - summary" if self.vm is None else f"kvm statistics - guest {self.vm}"
        lines = [head, f"{'':16} modeled time {cycles / self.cpu_hz:.6f} s ({cycles:,} cycles); "
                       f"CurAvg/s per modeled second",
                 f" {'Event':<{self.LABEL}} {'Total':>10}{'%Total':>7} {'CurAvg/s':>8}"]
        if total:
            lines.append(f" {'kvm_exit':<{self.LABEL}} {total:10d}{100.0:7.1f} {rate(sum(delta.values())):>8}")
            for name in sorted(counts, key=lambda k: (-delta[k], -counts[k], k)):
                lines.append(f" {'  kvm_exit(' + name + ')':<{self.LABEL}} {counts[name]:10d}"
                             f"{100 * counts[name] / total:7.1f} {rate(delta[name]):>8}")
            lines.append(f" {'Total':<{self.LABEL}} {total:10d}        {rate(sum(delta.values())):>8}")
        else:
            lines.append(" No matching events reported yet")
        return "\n".join(lines)

    def close(self) -> None:
        for src in self.sources:
            for st in src.vcpus:
                st.listener = None
