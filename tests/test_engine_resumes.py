"""Paused vCPUs resumed by the engine's loop (armvirt/engine_resumes.py): a run gives the
same instructions, cycles, exit statistics, counters and console output whether the C
loop takes the scheduler's plain resumes (on) or Python takes every step (off)."""
from __future__ import annotations

import pytest

from armvirt import engine_resumes, paths
from armvirt.console import Console
from armvirt.engine_resumes import EngineResumes
from armvirt.machine import Machine, MachineConfig

CASES = {
    "smp-hello x4 nvhe": dict(kernel="smp-hello.elf", smp=4),
    "smp-hello x4 vhe": dict(kernel="smp-hello.elf", smp=4, hyp_mode="vhe"),
    "smp-hello x4 type1": dict(kernel="smp-hello.elf", smp=4, hyp_mode="type1"),
    "spinlock x4 gicv3": dict(kernel="spinlock.elf", smp=4, gic_version=3),
    "ipi x2": dict(kernel="ipi.elf", smp=2),
    "smp-mmu x4: broadcast maintenance": dict(kernel="smp-mmu.elf", smp=4),
}


def run(xgene, monkeypatch, cfg: dict, mode: str):
    monkeypatch.setenv("ARMVIRT_ENGINE_RESUMES", mode)
    loops = []
    init = EngineResumes.__init__

    def noted(self, sched):
        init(self, sched)
        loops.append(self)
    monkeypatch.setattr(EngineResumes, "__init__", noted)
    m = Machine(MachineConfig(**dict(cfg, kernel=paths.image_path(cfg["kernel"]))), xgene,
                console=Console(echo=False))
    res = m.run()
    seen = (res.status, res.reason, res.insns, res.cycles, res.stats, res.counters, res.console.lines,
            [s.by_reason for s in res.vcpu_stats])
    return seen, sum(lp.runs for lp in loops)


@pytest.mark.parametrize("case", list(CASES))
def test_same_run_resumed_in_c_or_not(xgene, monkeypatch, case):
    cfg = CASES[case]
    off, runs_off = run(xgene, monkeypatch, cfg, "off")
    on, runs_on = run(xgene, monkeypatch, cfg, "on")
    assert off[0] == 0, f"{case}: expected exit status 0, got {off[:2]}"
    assert runs_off == 0, f"{case}: expected no resume in C with ARMVIRT_ENGINE_RESUMES=off, got {runs_off}"
    for what, i in (("status/reason", slice(0, 2)), ("instructions", 2), ("cycles", 3), ("exit statistics", 4),
                    ("counters", 5), ("console", 6), ("per-vCPU exit samples", 7)):
        assert on[i] == off[i], f"{case}: {what} with resumes in C: expected {off[i]!r}, got {on[i]!r}"
    assert runs_on > 0, f"{case}: expected the C loop to resume paused vCPUs, it resumed {runs_on}"


def test_shared_pcpus_take_every_step_in_python(xgene, monkeypatch):
    """Two vCPUs on one pCPU: the pick orders them by more than time (the C loop does not)."""
    seen, runs = run(xgene, monkeypatch, dict(kernel="smp-hello.elf", smp=4, pcpus=2), "on")
    assert seen[0] == 0, f"expected exit status 0, got {seen[:2]}"
    assert runs == 0, f"expected no resume in C with shared pCPUs, got {runs}"


def test_mode_from_the_environment(monkeypatch):
    monkeypatch.setenv("ARMVIRT_ENGINE_RESUMES", "sometimes")
    with pytest.raises(SystemExit, match="ARMVIRT_ENGINE_RESUMES='sometimes': must be one of on, off"):
        engine_resumes.mode_from_env()
    monkeypatch.setenv("ARMVIRT_ENGINE_RESUMES", "off")
    assert engine_resumes.mode_from_env() == "off", "expected mode off from the environment"
