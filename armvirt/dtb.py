"""Flattened device tree for a guest, modelled on what QEMU's hw/arm/virt.c emits for `-M virt`.

Built with the `fdt` library (pyFDT). Quirks of that library that shape this code:
  * `FDT()` has no header version, so `to_dtb()` raises unless a version is passed;
  * `FDT.__init__(entries=[])` is a shared mutable default that `parse_dtb` appends
    /memreserve/ entries to, so we always pass our own list;
  * `PropWords` holds 32-bit cells only: 64-bit addresses/sizes are split by hand;
  * its value checks are `assert`s (gone under `python -O`) and strings must be
    printable ASCII, so bootargs are validated here first.
"""

from __future__ import annotations

from dataclasses import dataclass

import fdt

from engine.layout import (
    DTB_MAX_SIZE, GIC_CPU_BASE, GIC_CPU_SIZE, GIC_DIST_BASE, GIC_DIST_SIZE,
    GIC_REDIST_BASE, GIC_REDIST_SIZE, GIC_REDIST_STRIDE, INTID_HYP_TIMER,
    INTID_PHYS_TIMER, INTID_SEC_PHYS_TIMER, INTID_VIRT_TIMER,
    PPI_BASE, UART_BASE, UART_SIZE, UART_SPI, RTC_BASE, RTC_SIZE, RTC_SPI,
    BENCH_IO_BASE, BENCH_IO_SIZE, BENCH_IO_SPI, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_SPI,
    FLASH_BASE, FLASH_BANK_SIZE, FLASH_BANK_WIDTH,
)

# Phandles as QEMU allocates them (any unique non-zero value would do).
CLK_PHANDLE = 0x8000
GIC_PHANDLE = 0x8002
CPU_PHANDLE_BASE = 0x8100

# GIC DT binding: first interrupt cell is the type, third the flags.
_SPI, _PPI = 0, 1
_EDGE_RISING, _LEVEL_HI = 1, 4
_MPIDR_AFF_MASK = 0xFF_00FF_FFFF   # Aff3..Aff0, dropping U/MT/RES1 bits
_PAGE = 0x1000


@dataclass(frozen=True)
class DtbConfig:
    ram_base: int
    ram_size: int
    mpidrs: tuple[int, ...]          # one per vCPU, boot CPU first
    gic_version: int                 # 2 or 3
    cpu_clock_hz: int                # guests derive cycles from counter ticks with it
    timer_freq_hz: int               # not emitted by default: the guest reads CNTFRQ_EL0
    bootargs: str = ""
    initrd: tuple[int, int] | None = None   # (start, end) guest physical
    cpu_compatible: str = "arm,cortex-a57"
    timer_freq_in_dt: bool = False   # Linux binding: only for firmware that leaves CNTFRQ unset
    flash: bool = False              # the two CFI flash banks are fitted (-bios / -drive if=pflash)


class DtbError(ValueError):
    """A device tree that cannot be built or used (one line)."""


def _cells64(*values: int) -> list[int]:
    """Split 64-bit values into (hi, lo) 32-bit cells for #address-cells = #size-cells = 2."""
    out: list[int] = []
    for v in values:
        out += [(v >> 32) & 0xFFFF_FFFF, v & 0xFFFF_FFFF]
    return out


def _node(name: str, *props: fdt.Property) -> fdt.Node:
    return fdt.Node(name, *props)


def _words(name: str, *cells: int) -> fdt.PropWords:
    return fdt.PropWords(name, *cells)


def _strs(name: str, *values: str) -> fdt.PropStrings:
    return fdt.PropStrings(name, *values)


def _flag(name: str) -> fdt.Property:
    return fdt.Property(name)     # empty (boolean) property


def _check(cfg: DtbConfig) -> None:
    if cfg.gic_version not in (2, 3):
        raise DtbError(f"gic_version must be 2 or 3, got {cfg.gic_version}")
    n = len(cfg.mpidrs)
    if n == 0:
        raise DtbError("at least one vCPU (MPIDR) is required")
    affs = [m & _MPIDR_AFF_MASK for m in cfg.mpidrs]
    if len(set(affs)) != n:
        raise DtbError(f"duplicate MPIDR affinities: {[hex(a) for a in affs]}")
    if any(a > 0xFFFF_FFFF for a in affs):
        raise DtbError("MPIDR with Aff3 set needs /cpus #address-cells = 2 (unsupported)")
    if cfg.gic_version == 2 and n > 8:
        raise DtbError(f"GICv2 supports at most 8 CPUs, got {n}")
    if cfg.gic_version == 3 and n * GIC_REDIST_STRIDE > GIC_REDIST_SIZE:
        raise DtbError(f"{n} redistributors do not fit the {GIC_REDIST_SIZE:#x} region")
    if cfg.ram_size <= 0 or cfg.cpu_clock_hz <= 0 or cfg.timer_freq_hz <= 0:
        raise DtbError("ram_size, cpu_clock_hz and timer_freq_hz must be positive")
    if not all(32 <= ord(c) < 127 for c in cfg.bootargs):
        raise DtbError(f"bootargs must be printable ASCII: {cfg.bootargs!r}")


def build_dtb(cfg: DtbConfig) -> bytes:
    """Return the DTB blob (version 17) describing the VM in `cfg`."""
    _check(cfg)
    ncpus = len(cfg.mpidrs)
    uart = f"/pl011@{UART_BASE:x}"

    root = fdt.Node("/")
    root.append(_strs("compatible", "linux,dummy-virt"))
    root.append(_strs("model", "linux,dummy-virt"))
    root.append(_words("#address-cells", 2))
    root.append(_words("#size-cells", 2))
    root.append(_words("interrupt-parent", GIC_PHANDLE))

    root.append(_psci_node())
    root.append(_memory_node(cfg, 2, 2))

    cpus = _node("cpus", _words("#address-cells", 1), _words("#size-cells", 0))
    # clock-frequency may be 1 or 2 cells (DT spec); use 2 only when needed.
    hz = [cfg.cpu_clock_hz] if cfg.cpu_clock_hz <= 0xFFFF_FFFF else _cells64(cfg.cpu_clock_hz)
    # QEMU 7.2's topology for -smp N: one socket, one cluster, N cores (cpu-map binding).
    cluster = _node("cluster0")
    cpus.append(_node("cpu-map", _node("socket0", cluster)))
    for i, mpidr in enumerate(cfg.mpidrs):
        aff = mpidr & _MPIDR_AFF_MASK   # unit address must match reg, so both use aff
        cluster.append(_node(f"core{i}", _words("cpu", CPU_PHANDLE_BASE + i)))
        cpus.append(_node(
            f"cpu@{aff:x}",
            _strs("device_type", "cpu"),
            _strs("compatible", cfg.cpu_compatible),
            _words("reg", aff),
            _strs("enable-method", "psci"),
            _words("clock-frequency", *hz),
            _words("phandle", CPU_PHANDLE_BASE + i),
        ))
    root.append(cpus)

    # GICv2 PPI flags carry a target-CPU mask in bits [15:8]; GICv3 has none.
    ppi_flags = _LEVEL_HI
    if cfg.gic_version == 2:
        ppi_flags |= ((1 << ncpus) - 1) << 8
    timer_irqs: list[int] = []
    for intid in (INTID_SEC_PHYS_TIMER, INTID_PHYS_TIMER, INTID_VIRT_TIMER, INTID_HYP_TIMER):
        timer_irqs += [_PPI, intid - PPI_BASE, ppi_flags]
    timer = _node(
        "timer",
        _strs("compatible", "arm,armv8-timer", "arm,armv7-timer"),     # as QEMU for a v8 CPU
        _words("interrupts", *timer_irqs),
        _flag("always-on"),
    )
    if cfg.timer_freq_in_dt:
        timer.append(_words("clock-frequency", cfg.timer_freq_hz))
    root.append(timer)

    # The guest is a KVM guest at EL1 with no EL2 of its own (QEMU's virtualization=off,
    # the default): no GICH/GICV regions and no maintenance interrupt in its GIC node.
    # GICv3: one redistributor region covering the whole window, as QEMU gives it; the
    # last vCPU's frame has GICR_TYPER.Last, so Linux stops there.
    if cfg.gic_version == 2:
        gic_compat = "arm,cortex-a15-gic"     # the binding's name for a GICv2
        gic_reg = _cells64(GIC_DIST_BASE, GIC_DIST_SIZE, GIC_CPU_BASE, GIC_CPU_SIZE)
    else:
        gic_compat = "arm,gic-v3"
        gic_reg = _cells64(GIC_DIST_BASE, GIC_DIST_SIZE, GIC_REDIST_BASE, GIC_REDIST_SIZE)
    gic = _node(
        f"intc@{GIC_DIST_BASE:x}",
        _strs("compatible", gic_compat),
        _words("#interrupt-cells", 3),
        _flag("interrupt-controller"),
        _words("#address-cells", 2),
        _words("#size-cells", 2),
        _flag("ranges"),
        _words("reg", *gic_reg),
        _words("phandle", GIC_PHANDLE),
    )
    if cfg.gic_version == 3:
        gic.append(_words("#redistributor-regions", 1))
    root.append(gic)

    root.append(_node(
        "apb-pclk",
        _strs("compatible", "fixed-clock"),
        _words("#clock-cells", 0),
        _words("clock-frequency", 24_000_000),
        _strs("clock-output-names", "clk24mhz"),
        _words("phandle", CLK_PHANDLE),
    ))

    root.append(_node(
        uart.lstrip("/"),
        _strs("compatible", "arm,pl011", "arm,primecell"),
        _words("reg", *_cells64(UART_BASE, UART_SIZE)),
        _words("interrupts", _SPI, UART_SPI, _LEVEL_HI),
        _words("clocks", CLK_PHANDLE, CLK_PHANDLE),
        _strs("clock-names", "uartclk", "apb_pclk"),
    ))

    root.append(_node(
        f"pl031@{RTC_BASE:x}",
        _strs("compatible", "arm,pl031", "arm,primecell"),
        _words("reg", *_cells64(RTC_BASE, RTC_SIZE)),
        _words("interrupts", _SPI, RTC_SPI, _LEVEL_HI),
        _words("clocks", CLK_PHANDLE),
        _strs("clock-names", "apb_pclk"),
    ))

    root.append(_node(                 # transport 0 of QEMU virt's 32 (create_virtio_devices)
        f"virtio_mmio@{VIRTIO_MMIO_BASE:x}",
        _flag("dma-coherent"),
        _words("interrupts", _SPI, VIRTIO_MMIO_SPI, _EDGE_RISING),
        _words("reg", *_cells64(VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE)),
        _strs("compatible", "virtio,mmio"),
    ))

    root.append(_node(                 # armvirt's I/O latency test device (host_kernel/bench_io.py)
        f"bench-io@{BENCH_IO_BASE:x}",
        _strs("compatible", "armvirt,bench-io"),
        _words("reg", *_cells64(BENCH_IO_BASE, BENCH_IO_SIZE)),
        _words("interrupts", _SPI, BENCH_IO_SPI, _LEVEL_HI),
    ))

    chosen = _node("chosen", _strs("stdout-path", uart))
    root.append(chosen)
    _patch_chosen(chosen, cfg, 2)

    if cfg.flash:
        # Both banks as one node (QEMU virt_flash_fdt without a secure world).  Last, so
        # the nodes a guest looks up before it keep their place in the blob.
        root.append(_node(
            f"flash@{FLASH_BASE:x}",
            _words("bank-width", FLASH_BANK_WIDTH),
            _words("reg", *_cells64(FLASH_BASE, FLASH_BANK_SIZE, FLASH_BASE + FLASH_BANK_SIZE, FLASH_BANK_SIZE)),
            _strs("compatible", "cfi-flash"),
        ))

    tree = fdt.FDT(entries=[])     # own list: the default one is shared (see module doc)
    tree.root = root
    return _emit(tree)


def _psci_node() -> fdt.Node:
    """/psci as QEMU's fdt_add_psci_node writes it for a 64-bit CPU with PSCI over HVC."""
    return _node(
        "psci",
        _strs("compatible", "arm,psci-1.0", "arm,psci-0.2", "arm,psci"),
        _strs("method", "hvc"),
        # SMCCC function IDs, 64-bit variants where the call takes addresses.
        _words("cpu_suspend", 0xC400_0001),
        _words("cpu_off", 0x8400_0002),
        _words("cpu_on", 0xC400_0003),
        _words("migrate", 0xC400_0005),
    )


def _sized(value: int, cells: int) -> list[int]:
    """`value` in `cells` 32-bit cells (QEMU qemu_fdt_setprop_sized_cells)."""
    if value >> (32 * cells):
        raise DtbError(f"{value:#x} does not fit in {cells} cell(s)")
    return [(value >> (32 * i)) & 0xFFFF_FFFF for i in reversed(range(cells))]


def _memory_node(cfg: DtbConfig, acells: int, scells: int) -> fdt.Node:
    return _node(
        f"memory@{cfg.ram_base:x}",
        _strs("device_type", "memory"),
        _words("reg", *_sized(cfg.ram_base, acells), *_sized(cfg.ram_size, scells)),
    )


def _patch_chosen(chosen: fdt.Node, cfg: DtbConfig, acells: int) -> None:
    """bootargs and the initrd range, as QEMU's arm_load_dtb sets them (on its own
    blob or the user's -dtb): bootargs only when non-empty, initrd in #address-cells."""
    if cfg.bootargs:              # PropStrings refuses "", and QEMU omits it when empty
        chosen.set_property("bootargs", cfg.bootargs)
    if cfg.initrd is not None:
        start, end = cfg.initrd
        if not cfg.ram_base <= start <= end <= cfg.ram_base + cfg.ram_size:
            raise DtbError(f"initrd [{start:#x}, {end:#x}) is not inside RAM")
        for name, v in (("linux,initrd-start", start), ("linux,initrd-end", end)):
            chosen.remove_property(name)
            chosen.append(_words(name, *_sized(v, acells)))


def _emit(tree: fdt.FDT) -> bytes:
    blob = tree.to_dtb(version=17)
    if len(blob) > DTB_MAX_SIZE:
        raise DtbError(f"DTB is {len(blob)} bytes, more than DTB_MAX_SIZE ({DTB_MAX_SIZE}): "
                       f"booting.rst allows at most 2 MiB")
    return blob


def _parse(blob: bytes) -> fdt.FDT:
    if len(blob) < 40 or blob[:4] != b"\xd0\x0d\xfe\xed":
        raise DtbError("not a flattened device tree (no 0xd00dfeed magic)")
    shared = fdt.FDT.__init__.__defaults__[1]   # see the module doc
    before = len(shared)
    try:
        tree = fdt.parse_dtb(bytes(blob))
    except Exception as e:                       # pyFDT raises bare Exceptions and asserts
        raise DtbError(f"corrupt device tree: {e or type(e).__name__}") from None
    finally:
        entries = shared[before:]
        del shared[before:]
    tree.entries = entries
    if tree.root is None:
        raise DtbError("corrupt device tree: no root node")
    return tree


def _cell(node: fdt.Node, name: str) -> int:
    p = node.get_property(name)
    return p.data[0] if isinstance(p, fdt.PropWords) and len(p.data) == 1 else 0


def patch_dtb(blob: bytes, cfg: DtbConfig) -> bytes:
    """The user's -dtb with what QEMU's arm_load_dtb changes in it: every /memory node
    replaced by one for the VM's RAM, /chosen bootargs and initrd, and /psci replaced
    by armvirt's (a blob's own function IDs may not match the PSCI armvirt implements)."""
    _check(cfg)
    tree = _parse(blob)
    root = tree.root
    acells, scells = _cell(root, "#address-cells"), _cell(root, "#size-cells")
    if acells == 0 or scells == 0:
        raise DtbError("invalid: / has no (or a zero) #address-cells or #size-cells")
    if scells < 2 and cfg.ram_size >= 1 << 32:
        raise DtbError("/#size-cells = 1 cannot describe 4 GiB or more of RAM")
    for n in list(root.nodes):
        if n.name == "memory" or n.name.startswith("memory@") or n.name == "psci":
            root.remove_subnode(n.name)
    root.append(_memory_node(cfg, acells, scells))
    root.append(_psci_node())
    if not root.exist_subnode("chosen"):
        root.append(_node("chosen"))
    _patch_chosen(root.get_subnode("chosen"), cfg, acells)
    return _emit(tree)
