"""HCR_EL2 and CNTHCTL_EL2 bits (ARM ARM D17.2.48) and the trap configuration a
guest runs with - KVM's HCR_GUEST_FLAGS (arch/arm64/include/asm/kvm_arm.h)."""
HCR_VM = 1 << 0
HCR_SWIO = 1 << 1
HCR_PTW = 1 << 2
HCR_FMO = 1 << 3
HCR_IMO = 1 << 4
HCR_AMO = 1 << 5
HCR_VF = 1 << 6
HCR_VI = 1 << 7
HCR_VSE = 1 << 8
HCR_FB = 1 << 9
HCR_BSU_IS = 1 << 10
HCR_TWI = 1 << 13
HCR_TWE = 1 << 14
HCR_TID3 = 1 << 18
HCR_TSC = 1 << 19
HCR_TIDCP = 1 << 20
HCR_TACR = 1 << 21
HCR_TSW = 1 << 22
HCR_TVM = 1 << 26
HCR_TGE = 1 << 27
HCR_RW = 1 << 31
HCR_E2H = 1 << 34

# TID3: the ID registers are the VM's, not the core's (host_kernel/sys_regs.py), as KVM.
HCR_GUEST_FLAGS = (HCR_TSC | HCR_TSW | HCR_TWE | HCR_TWI | HCR_VM | HCR_BSU_IS | HCR_FB
                   | HCR_TACR | HCR_AMO | HCR_SWIO | HCR_TIDCP | HCR_RW | HCR_FMO | HCR_IMO | HCR_PTW
                   | HCR_TID3)
HCR_HOST_NVHE_FLAGS = HCR_RW

# MDCR_EL2 (ARM ARM D17.2.84): TPM and TPMCR trap every PMU register access to EL2.  The
# board has no PMU (ID_AA64DFR0_EL1.PMUVer reads 0), so they are UNDEFINED for the guest,
# as under KVM for a vCPU without one (and PMCCNTR would count host time otherwise).
MDCR_TPMCR = 1 << 5
MDCR_TPM = 1 << 6
MDCR_GUEST_FLAGS = MDCR_TPM | MDCR_TPMCR

# CNTHCTL_EL2 (E2H = 0): EL1PCTEN[0] lets EL1/EL0 read CNTPCT; EL1PCEN[1] lets them use CNTP_*.
CNTHCTL_EL1PCTEN = 1 << 0
CNTHCTL_EL1PCEN = 1 << 1
# FEAT_ECV: EL1TVT traps EL1/EL0 accesses to the virtual timer (CNTV_*).  ARMv8.0 cannot
# trap them; --no-vtimer models a core that can, to show what the virtual timer saves.
CNTHCTL_EL1TVT = 1 << 13

SCR_EL3_NS_HCE_RW = 0x501          # non-secure, HVC enabled, lower ELs AArch64
