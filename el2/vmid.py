"""VMID allocation: 8-bit VMIDs (VTCR_EL2.VS = 0); VMID 0 is left to the host as KVM does."""


class VmidAllocator:
    BITS = 8

    def __init__(self):
        self._next = 1

    def alloc(self) -> int:
        if self._next >= 1 << self.BITS:
            raise RuntimeError("out of VMIDs (rollover is not modeled)")
        vmid, self._next = self._next, self._next + 1
        return vmid
