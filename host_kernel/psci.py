"""PSCI 1.0 and SMCCC 1.1 over HVC (KVM psci.c / hypercalls.c).

Function IDs are taken from W0.  An unknown ID returns NOT_SUPPORTED (-1) in
x0 and leaves x1-x30 untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# SMCCC (DEN 0028) and PSCI (DEN 0022) function IDs.
SMCCC_VERSION = 0x80000000
SMCCC_ARCH_FEATURES = 0x80000001
PSCI_VERSION = 0x84000000
PSCI_CPU_SUSPEND, PSCI_CPU_SUSPEND64 = 0x84000001, 0xC4000001
PSCI_CPU_OFF = 0x84000002
PSCI_CPU_ON, PSCI_CPU_ON64 = 0x84000003, 0xC4000003
PSCI_AFFINITY_INFO, PSCI_AFFINITY_INFO64 = 0x84000004, 0xC4000004
PSCI_MIGRATE, PSCI_MIGRATE64 = 0x84000005, 0xC4000005
PSCI_MIGRATE_INFO_TYPE = 0x84000006
PSCI_MIGRATE_INFO_UP_CPU, PSCI_MIGRATE_INFO_UP_CPU64 = 0x84000007, 0xC4000007
PSCI_SYSTEM_OFF = 0x84000008
PSCI_SYSTEM_RESET = 0x84000009
PSCI_FEATURES = 0x8400000A

SUCCESS, NOT_SUPPORTED, INVALID_PARAMETERS, DENIED, ALREADY_ON, ON_PENDING = 0, -1, -2, -3, -4, -5
INTERNAL_FAILURE, NOT_PRESENT, DISABLED, INVALID_ADDRESS = -6, -7, -8, -9
AFF_ON, AFF_OFF, AFF_ON_PENDING = 0, 1, 2
MIGRATE_INFO_TYPE_NO_TOS = 2           # Trusted OS not present or needs no migration
PSCI_VERSION_1_0 = 0x0001_0000
SMCCC_VERSION_1_1 = 0x0001_0001

SYSTEM_EVENT_SHUTDOWN, SYSTEM_EVENT_RESET = 1, 2   # KVM_SYSTEM_EVENT_*


@dataclass(frozen=True)
class SystemEvent:
    type: int


POWER_OFF = object()        # CPU_OFF succeeded: it does not return to the caller


Result = int | SystemEvent
Handler = Callable[["object", list], Result]


def _is_32bit(fid: int) -> bool:
    return not fid & 0x4000_0000


def _mpidr_of(vcpu, target: int):
    for v in vcpu.vm.vcpus:
        if v.mpidr & 0xFF00FFFFFF == target & 0xFF00FFFFFF:
            return v
    return None


def psci_version(vcpu, a) -> Result:
    return PSCI_VERSION_1_0


def cpu_suspend(vcpu, a) -> Result:
    # A standby power state may wake for any reason (DEN 0022, 5.4.2): KVM treats it as WFI.
    return SUCCESS


def cpu_off(vcpu, a) -> Result:
    vcpu.power_off()
    return POWER_OFF


def cpu_on(vcpu, a) -> Result:
    target = _mpidr_of(vcpu, a[1])
    if target is None:
        return INVALID_PARAMETERS
    return target.power_on_request(entry=a[2], context_id=a[3])


def affinity_info(vcpu, a) -> Result:
    if a[2] != 0:                      # lowest affinity level: only level 0 is supported, as KVM
        return INVALID_PARAMETERS
    target = _mpidr_of(vcpu, a[1])
    if target is None:
        return INVALID_PARAMETERS
    return target.affinity_state()


def migrate(vcpu, a) -> Result:
    return NOT_SUPPORTED


def migrate_info_type(vcpu, a) -> Result:
    return MIGRATE_INFO_TYPE_NO_TOS


def migrate_info_up_cpu(vcpu, a) -> Result:
    return NOT_SUPPORTED


def system_off(vcpu, a) -> Result:
    return SystemEvent(SYSTEM_EVENT_SHUTDOWN)


def system_reset(vcpu, a) -> Result:
    return SystemEvent(SYSTEM_EVENT_RESET)


def psci_features(vcpu, a) -> Result:
    fid = a[1] & 0xFFFFFFFF
    if fid in (PSCI_CPU_SUSPEND, PSCI_CPU_SUSPEND64):
        return 0                       # original power_state format, no OS-initiated mode
    return SUCCESS if fid in FUNCTIONS else NOT_SUPPORTED


def smccc_version(vcpu, a) -> Result:
    return SMCCC_VERSION_1_1


def smccc_arch_features(vcpu, a) -> Result:
    return SUCCESS if (a[1] & 0xFFFFFFFF) == SMCCC_VERSION else NOT_SUPPORTED


FUNCTIONS: dict[int, Handler] = {
    SMCCC_VERSION: smccc_version, SMCCC_ARCH_FEATURES: smccc_arch_features,
    PSCI_VERSION: psci_version,
    PSCI_CPU_SUSPEND: cpu_suspend, PSCI_CPU_SUSPEND64: cpu_suspend,
    PSCI_CPU_OFF: cpu_off,
    PSCI_CPU_ON: cpu_on, PSCI_CPU_ON64: cpu_on,
    PSCI_AFFINITY_INFO: affinity_info, PSCI_AFFINITY_INFO64: affinity_info,
    PSCI_MIGRATE: migrate, PSCI_MIGRATE64: migrate,
    PSCI_MIGRATE_INFO_TYPE: migrate_info_type,
    PSCI_MIGRATE_INFO_UP_CPU: migrate_info_up_cpu, PSCI_MIGRATE_INFO_UP_CPU64: migrate_info_up_cpu,
    PSCI_SYSTEM_OFF: system_off, PSCI_SYSTEM_RESET: system_reset,
    PSCI_FEATURES: psci_features,
}


def call(vcpu, fid: int) -> Result | None:
    """Run the SMCCC function `fid` for `vcpu`; None if it is not implemented."""
    handler = FUNCTIONS.get(fid)
    if handler is None:
        return None
    ctx = vcpu.ctx
    args = [ctx.x(i) for i in range(4)]
    if _is_32bit(fid):                 # SMC32/HVC32: arguments are W registers
        args = [x & 0xFFFFFFFF for x in args]
    return handler(vcpu, args)
