package dev.kiln.support;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Whether this host has KVM a guest can run on: {@code /dev/kvm} readable and writable, backed by hardware
 * virtualisation (kvm_intel or kvm_amd). kvm_pvm, a software nested hypervisor found on some cloud VMs, counts as
 * unusable: stock guest kernels crash or crawl under it.
 */
public final class HostKvm {
    private static final Path DEV = Path.of("/dev/kvm");

    private HostKvm() {}

    /** Null when KVM is usable, else why not (for messages). */
    public static String whyUnusable() {
        if (!Files.exists(DEV)) return "/dev/kvm does not exist";
        if (!Files.isReadable(DEV) || !Files.isWritable(DEV)) return "/dev/kvm is not readable and writable by this user";
        if (Files.exists(Path.of("/sys/module/kvm_pvm"))) {
            return "/dev/kvm is kvm_pvm, a software nested hypervisor guests crash under";
        }
        if (Files.exists(Path.of("/sys/module/kvm_intel")) || Files.exists(Path.of("/sys/module/kvm_amd"))) return null;
        return "/dev/kvm exists but neither kvm_intel nor kvm_amd is loaded";
    }

    public static boolean usable() {
        return whyUnusable() == null;
    }

    /** Which hardware module backs it, when usable: kvm_intel or kvm_amd. */
    public static String module() {
        return Files.exists(Path.of("/sys/module/kvm_intel")) ? "kvm_intel" : "kvm_amd";
    }
}
