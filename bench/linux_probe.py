#!/usr/bin/env python3
"""`armvirt run ARGS...` as a user runs it (python -m armvirt: the same imports, parsing
and loading), instrumented for bench/engine.py's linux line:

- the run ends when the guest first reaches user space (MachineConfig.stop_at_init);
- the last stderr line is `probe: startup_s=<s> init_s=<s> insns_to_init=<n>`: seconds
  from process start (the kernel's start time of this process) to the guest's first
  instruction and to the end of the run, and the guest instructions the run summary
  reports for the first user-space instruction.
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def process_start() -> float:
    """This process's start, on the time.time() clock (/proc/self/stat field 22, in clock ticks)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")


def main() -> int:
    t0 = process_start()
    from armvirt import cli, machine
    from engine import core

    first = []
    emulate, init = core.PhysicalCpu.emulate, machine.Machine.__init__

    def timed_emulate(self, pc):
        if not first:
            first.append(time.time())
        return emulate(self, pc)

    def stop_at_init(self, cfg, *a, **kw):
        cfg.stop_at_init = True
        init(self, cfg, *a, **kw)
        machines.append(self)

    machines = []
    core.PhysicalCpu.emulate, machine.Machine.__init__ = timed_emulate, stop_at_init
    rc = cli.main(["run", *sys.argv[1:]])
    t1 = time.time()
    fe = machines[0].vm.first_el0 if machines else None
    if not first or fe is None:
        print(f"probe: the guest did not reach user space (exit code {rc})", file=sys.stderr)
        return 1
    print(f"probe: startup_s={first[0] - t0:.3f} init_s={t1 - t0:.3f} insns_to_init={fe['insns']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
