package dev.kiln.firecracker.api.model;

import java.util.List;

/** {@code MmdsConfig}: MMDS version, its link-local address and the interfaces that may reach it. */
public record MmdsConfig(Version version, List<String> networkInterfaces, String ipv4Address, Boolean imdsCompat) {
    public enum Version { V1, V2 }

    public static MmdsConfig of(Version version, List<String> networkInterfaces) {
        return new MmdsConfig(version, networkInterfaces, null, null);
    }
}
