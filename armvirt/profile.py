"""Cost profiles: TOML files of per-primitive cycles, each with its source (DESIGN.md section 6)."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources

PROFILE_DIR = str(resources.files("armvirt") / "profiles")      # package data
REQUIRED = ("exc_entry_el2", "eret", "exc_entry_el1", "gp_pair_store", "gp_pair_load",
            "special_reg_save", "special_reg_restore", "fp_pair_store", "fp_pair_load", "fp_ctrl_save",
            "fp_ctrl_restore", "el1_sysreg_save", "el1_sysreg_restore", "gich_mmio_read",
            "gich_mmio_write", "el2_sysreg_read", "el2_sysreg_write", "vttbr_write", "el2_vector_guest",
            "el2_vector_host", "run_loop", "vgic_flush", "vgic_sync", "timer_flush", "timer_sync",
            "handle_exit", "hvc_handler", "sysreg_emulate", "inject_fault", "stage2_map_page", "stage2_map_block",
            "mmio_decode", "kernel_mmio_device", "exit_to_user", "vmm_mmio_dispatch",
            "user_mmio_device", "kvm_run_ioctl", "kvm_irq_line", "gicv_mmio_read", "gicv_mmio_write", "gicc_mmio_read",
            "gicc_mmio_write", "vgic_lr_populate", "vgic_lr_fold", "host_irq_entry", "timer_irq_handler",
            "maintenance_irq_handler", "host_event_handler", "vcpu_block", "vcpu_wakeup",
            "ich_sysreg_read", "ich_sysreg_write", "icv_sysreg_read", "icv_sysreg_write",
            "ioeventfd_signal", "irqfd_inject", "linux_ttwu", "backend_ring_read", "sched_switch",
            "gicd_mmio_write", "gic_sgi_delivery", "icc_sysreg_read", "icc_sysreg_write",
            "ioeventfd_write", "virtqueue_desc", "virtio_blk_request", "blk_file_io", "blk_copy_page",
            "blk_flush")


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class CostProfile:
    name: str
    description: str
    path: str
    cpu_hz: int
    cntfrq_hz: int
    cpi: int
    costs: dict
    sources: dict


def available() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(PROFILE_DIR) if f.endswith(".toml"))


def load(name_or_path: str = "xgene") -> CostProfile:
    path = name_or_path if name_or_path.endswith(".toml") else os.path.join(PROFILE_DIR, name_or_path + ".toml")
    if not os.path.isfile(path):
        raise ProfileError(f"no cost profile {name_or_path!r} (available: {', '.join(available())}, or a .toml path)")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ProfileError(f"cannot read cost profile {path}: {e}") from None
    head, raw = data.get("profile", {}), data.get("costs", {})
    costs, sources = {}, {}
    for key, v in raw.items():
        if isinstance(v, dict):
            cycles, src = v.get("cycles"), v.get("source", "")
        else:
            cycles, src = v, ""
        if not isinstance(cycles, int) or cycles < 0:
            raise ProfileError(f"{path}: cost {key!r} must be a non-negative integer number of cycles")
        if not src:
            raise ProfileError(f"{path}: cost {key!r} does not state its source")
        costs[key], sources[key] = cycles, src
    missing = [k for k in REQUIRED if k not in costs]
    if missing:
        raise ProfileError(f"{path}: missing costs {', '.join(missing)}")
    for key in ("cpu_hz", "cntfrq_hz", "cpi"):
        if not isinstance(head.get(key), int) or head[key] <= 0:
            raise ProfileError(f"{path}: [profile] {key} must be a positive integer")
    return CostProfile(head.get("name", os.path.basename(path)[:-5]), head.get("description", ""), path,
                       head["cpu_hz"], head["cntfrq_hz"], head["cpi"], costs, sources)
