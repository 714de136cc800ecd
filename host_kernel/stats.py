"""Exit statistics per vCPU, as KVM's kvm_exit/kvm_entry tracepoints give them to
`perf kvm stat`: per exit reason (KVM's arm64 names), the samples and the time from
the exit to the next entry, in modeled cycles (armvirt.kvm_stat prints them)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class ExitStat:
    count: int = 0
    total: int = 0
    min: int = 0
    max: int = 0
    sumsq: int = 0            # exact sum of squares, for perf's relative stddev of the mean

    def add(self, cycles: int) -> None:
        self.add_many(cycles, 1)

    def add_many(self, cycles: int, n: int) -> None:
        """n samples of the same time (exits the engine served, host_kernel/fast_mmio.py)."""
        self.min = cycles if self.count == 0 else min(self.min, cycles)
        self.max = max(self.max, cycles)
        self.count += n
        self.total += n * cycles
        self.sumsq += n * cycles * cycles

    def merge(self, other: "ExitStat") -> None:
        if other.count:
            self.min = other.min if self.count == 0 else min(self.min, other.min)
            self.max = max(self.max, other.max)
            self.count += other.count
            self.total += other.total
            self.sumsq += other.sumsq

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def rel_stddev(self) -> float:
        """perf's util/stat.c: 100 * stddev of the mean / mean, the stddev of the mean
        being sqrt(M2 / (n - 1) / n); from exact integer sums."""
        n = self.count
        if n < 2 or self.total == 0:
            return 0.0
        m2n = n * self.sumsq - self.total * self.total        # n * M2
        return 100.0 * math.sqrt(m2n / (n - 1)) / self.total


@dataclass
class ExitStats:
    by_reason: dict = field(default_factory=dict)
    listener: Callable[[], None] | None = None     # called after each sample (armvirt stat's live view)

    def add(self, reason: str, cycles: int) -> None:
        self.add_many(reason, cycles, 1)

    def add_many(self, reason: str, cycles: int, n: int) -> None:
        stat = self.by_reason.get(reason)
        if stat is None:
            stat = self.by_reason[reason] = ExitStat()
        stat.add_many(cycles, n)
        if self.listener is not None:
            for _ in range(n):                     # after each sample, as documented
                self.listener()

    def rows(self) -> list[dict]:
        n = sum(s.count for s in self.by_reason.values()) or 1
        t = sum(s.total for s in self.by_reason.values()) or 1
        out = []
        for reason, s in sorted(self.by_reason.items(), key=lambda kv: (-kv[1].count, kv[0])):
            out.append({"VM-EXIT": reason, "Samples": s.count, "Samples%": round(100 * s.count / n, 2),
                        "Time%": round(100 * s.total / t, 2), "Min": s.min, "Max": s.max,
                        "Avg": round(s.total / s.count, 2)})
        return out
