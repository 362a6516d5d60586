package dev.kiln;

import java.util.Locale;

/** The VMM a machine runs on. */
public enum Backend {
    QEMU, FIRECRACKER;

    /** The environment variable that picks the backend of specs that do not name one. */
    public static final String ENVIRONMENT_VARIABLE = "KILN_BACKEND";

    /** {@code $KILN_BACKEND} when set (qemu or firecracker), else QEMU. */
    public static Backend fromEnvironment() {
        String env = System.getenv(ENVIRONMENT_VARIABLE);
        if (env == null || env.isBlank()) return QEMU;
        try {
            return parse(env);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(ENVIRONMENT_VARIABLE + ": " + e.getMessage());
        }
    }

    /** {@code qemu} or {@code firecracker}, in any case. */
    public static Backend parse(String name) {
        try {
            return valueOf(name.strip().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown backend '" + name + "': use qemu or firecracker");
        }
    }

    /** How people write it: QEMU, Firecracker. */
    public String displayName() {
        return this == QEMU ? "QEMU" : "Firecracker";
    }
}
