"""Exit statistics per vCPU, in the layout of `perf kvm stat` (VM-EXIT, Samples,
Samples%, Time%, Min, Max, Avg), durations in modeled cycles."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExitStat:
    count: int = 0
    total: int = 0
    min: int = 0
    max: int = 0

    def add(self, cycles: int) -> None:
        self.min = cycles if self.count == 0 else min(self.min, cycles)
        self.max = max(self.max, cycles)
        self.count += 1
        self.total += cycles


@dataclass
class ExitStats:
    by_reason: dict = field(default_factory=dict)

    def add(self, reason: str, cycles: int) -> None:
        stat = self.by_reason.get(reason)
        if stat is None:
            stat = self.by_reason[reason] = ExitStat()
        stat.add(cycles)

    def rows(self) -> list[dict]:
        n = sum(s.count for s in self.by_reason.values()) or 1
        t = sum(s.total for s in self.by_reason.values()) or 1
        out = []
        for reason, s in sorted(self.by_reason.items(), key=lambda kv: (-kv[1].count, kv[0])):
            out.append({"VM-EXIT": reason, "Samples": s.count, "Samples%": round(100 * s.count / n, 2),
                        "Time%": round(100 * s.total / t, 2), "Min": s.min, "Max": s.max,
                        "Avg": round(s.total / s.count, 2)})
        return out
