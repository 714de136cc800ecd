"""Generic timer models (system counter, EL1 virtual/physical timers) arrive with the
interrupt-virtualization work; today the virtual counter and CNTV_* registers are
virtualized by the engine's fast path (engine/fastpath.c) and switched by the
world switch's timer group."""
