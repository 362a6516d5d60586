package dev.kiln.firecracker.api.model;

import java.util.List;

/** {@code CpuConfig}: a custom CPU template (modifiers for CPUID leaves, MSRs, ARM registers, vCPU features). */
public record CpuConfig(List<String> kvmCapabilities, List<CpuidLeafModifier> cpuidModifiers,
                        List<MsrModifier> msrModifiers, List<ArmRegisterModifier> regModifiers,
                        List<VcpuFeatures> vcpuFeatures) {
    /** {@code CpuidLeafModifier}: how to change one CPUID leaf/subleaf (x86_64). */
    public record CpuidLeafModifier(String leaf, String subleaf, Integer flags, List<CpuidRegisterModifier> modifiers) {}

    /** {@code CpuidRegisterModifier}: a bitmap such as {@code 0bxxxx…0001} for one register. */
    public record CpuidRegisterModifier(Register register, String bitmap) {}

    public enum Register { eax, ebx, ecx, edx }

    /** {@code MsrModifier}: a bitmap for one model specific register (x86_64). */
    public record MsrModifier(String addr, String bitmap) {}

    /** {@code ArmRegisterModifier}: a bitmap for one register (aarch64). */
    public record ArmRegisterModifier(String addr, String bitmap) {}

    /** {@code VcpuFeatures}: a bitmap for one entry of {@code kvm_vcpu_init.features} (aarch64). */
    public record VcpuFeatures(Integer index, String bitmap) {}
}
