package dev.kiln.qemu;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Which accelerator a machine runs on. {@code AUTO} picks KVM when it is real and usable, TCG (QEMU's
 * emulator) otherwise. kvm_pvm, a software nested hypervisor, counts as unusable: guests crash or crawl on it.
 * The environment variable {@code KILN_ACCEL=kvm|tcg|auto} sets the default.
 */
public enum Accelerator {
    AUTO, KVM, TCG;

    /** The outcome of choosing: the accelerator and why it was chosen. */
    public record Choice(Accelerator accelerator, String reason) {
        @Override
        public String toString() {
            return accelerator.name().toLowerCase(Locale.ROOT) + " (" + reason + ")";
        }
    }

    public static Accelerator parse(String s) {
        try {
            return valueOf(s.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown accelerator '" + s + "': use auto, kvm or tcg");
        }
    }

    /** The default: {@code KILN_ACCEL} if set, else AUTO. */
    public static Accelerator fromEnvironment() {
        String env = System.getenv("KILN_ACCEL");
        return env == null || env.isBlank() ? AUTO : parse(env);
    }

    /** Resolves AUTO against this host; KVM and TCG are taken as asked. */
    public Choice resolve() {
        return switch (this) {
            case KVM -> new Choice(KVM, "asked for");
            case TCG -> new Choice(TCG, "asked for");
            case AUTO -> detect();
        };
    }

    private static Choice detect() {
        Path kvm = Path.of("/dev/kvm");
        if (!Files.exists(kvm)) return new Choice(TCG, "auto: /dev/kvm does not exist");
        if (!Files.isReadable(kvm) || !Files.isWritable(kvm)) {
            return new Choice(TCG, "auto: /dev/kvm is not readable and writable by this user");
        }
        if (Files.exists(Path.of("/sys/module/kvm_pvm"))) {
            return new Choice(TCG, "auto: /dev/kvm is kvm_pvm, a software nested hypervisor guests crash under");
        }
        if (Files.exists(Path.of("/sys/module/kvm_intel"))) return new Choice(KVM, "auto: kvm_intel is loaded");
        if (Files.exists(Path.of("/sys/module/kvm_amd"))) return new Choice(KVM, "auto: kvm_amd is loaded");
        return new Choice(TCG, "auto: /dev/kvm exists but neither kvm_intel nor kvm_amd is loaded");
    }

    public String qemuName() {
        if (this == AUTO) throw new IllegalStateException("resolve AUTO first");
        return name().toLowerCase(Locale.ROOT);
    }
}
