package dev.kiln.firecracker.api.model;

/** {@code BootSource}: the kernel (an uncompressed ELF {@code vmlinux} on x86_64), its command line and initrd. */
public record BootSource(String kernelImagePath, String bootArgs, String initrdPath) {
    public static BootSource of(String kernelImagePath, String bootArgs) {
        return new BootSource(kernelImagePath, bootArgs, null);
    }
}
