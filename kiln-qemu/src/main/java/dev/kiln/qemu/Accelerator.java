package dev.kiln.qemu;

import dev.kiln.support.HostKvm;

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
        String why = HostKvm.whyUnusable();
        return why == null ? new Choice(KVM, "auto: " + HostKvm.module() + " is loaded") : new Choice(TCG, "auto: " + why);
    }

    public String qemuName() {
        if (this == AUTO) throw new IllegalStateException("resolve AUTO first");
        return name().toLowerCase(Locale.ROOT);
    }
}
