package dev.kiln.qemu;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * The value of a QEMU option such as {@code -chardev}, {@code -netdev}, {@code -device} or {@code -add-fd}:
 * an optional leading type and {@code key=value} properties, in the order they were added (so command lines
 * are reproducible), a key may repeat ({@code hostfwd=…,hostfwd=…}). Commas in values are doubled, which is
 * how QEMU escapes them, so a path with a comma stays one value.
 *
 * <pre>{@code QemuOption.of("socket").set("id", "mon").set("path", sock)  // socket,id=mon,path=/tmp/a,,b.sock}</pre>
 */
public final class QemuOption {
    private final String type;
    private final List<String> parts = new ArrayList<>();

    private QemuOption(String type) {
        this.type = type;
    }

    /** An option led by {@code type} (e.g. {@code socket}, {@code virtio-net-device}); null for none. */
    public static QemuOption of(String type) {
        if (type != null) checkName("type", type);
        return new QemuOption(type);
    }

    /** Adds {@code key=value}; a key may be added more than once. */
    public QemuOption set(String key, Object value) {
        checkName("key", key);
        parts.add(key + "=" + escape(String.valueOf(Objects.requireNonNull(value, () -> "value of " + key))));
        return this;
    }

    /** Adds {@code key=value} when {@code value} is not null. */
    public QemuOption setIfPresent(String key, Object value) {
        return value == null ? this : set(key, value);
    }

    /** Adds {@code key} alone (QEMU reads a bare key as {@code key=on}). */
    public QemuOption flag(String key) {
        checkName("key", key);
        parts.add(key);
        return this;
    }

    /** A value with its commas doubled. */
    public static String escape(String value) {
        return value.replace(",", ",,");
    }

    private static void checkName(String what, String name) {
        if (name.isEmpty() || name.contains(",") || name.contains("=")) {
            throw new IllegalArgumentException("QEMU option " + what + " must be non-empty without ',' or '=': '" + name + "'");
        }
    }

    @Override
    public String toString() {
        List<String> all = new ArrayList<>();
        if (type != null) all.add(type);
        all.addAll(parts);
        return String.join(",", all);
    }
}
