package dev.kiln.firecracker.api.model;

import com.fasterxml.jackson.annotation.JsonProperty;

/**
 * {@code MachineConfiguration}: vCPUs (1 or an even number up to 32 with SMT), memory, SMT, dirty page
 * tracking (for diff snapshots), a CPU template and huge pages. A PUT resets what it leaves out to defaults.
 */
public record MachineConfiguration(CpuTemplate cpuTemplate, Boolean smt, Integer memSizeMib, Boolean trackDirtyPages,
                                   Integer vcpuCount, HugePages hugePages) {
    public enum HugePages {
        @JsonProperty("None") NONE,
        @JsonProperty("Transparent") TRANSPARENT,
        /** Explicit 2 MiB hugetlbfs pages. */
        @JsonProperty("2M") HUGETLBFS_2M
    }

    public static MachineConfiguration of(int vcpuCount, int memSizeMib) {
        return new MachineConfiguration(null, null, memSizeMib, null, vcpuCount, null);
    }

    public MachineConfiguration withSmt(Boolean v) { return new MachineConfiguration(cpuTemplate, v, memSizeMib, trackDirtyPages, vcpuCount, hugePages); }

    public MachineConfiguration withTrackDirtyPages(Boolean v) { return new MachineConfiguration(cpuTemplate, smt, memSizeMib, v, vcpuCount, hugePages); }

    public MachineConfiguration withCpuTemplate(CpuTemplate v) { return new MachineConfiguration(v, smt, memSizeMib, trackDirtyPages, vcpuCount, hugePages); }

    public MachineConfiguration withHugePages(HugePages v) { return new MachineConfiguration(cpuTemplate, smt, memSizeMib, trackDirtyPages, vcpuCount, v); }
}
