package dev.kiln.qemu;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * A QEMU command line under construction: the binary, an optional wrapper in front of it (strace, gdb,
 * valgrind…) and the arguments in order. Immutable once {@link #build()} is called.
 */
public final class QemuCommandLine {
    private final List<String> wrapper = new ArrayList<>();
    private String binary;
    private final List<String> args = new ArrayList<>();

    public QemuCommandLine(String binary) {
        this.binary = binary;
    }

    public QemuCommandLine wrapper(List<String> prefix) {
        wrapper.addAll(prefix);
        return this;
    }

    /** Adds a flag and its value, e.g. {@code option("-m", "256")}. */
    public QemuCommandLine option(String flag, String value) {
        args.add(flag);
        args.add(value);
        return this;
    }

    public QemuCommandLine flag(String flag) {
        args.add(flag);
        return this;
    }

    public QemuCommandLine raw(List<String> more) {
        args.addAll(more);
        return this;
    }

    public List<String> arguments() {
        return Collections.unmodifiableList(args);
    }

    /** The full argv: wrapper, binary, arguments. */
    public List<String> build() {
        List<String> all = new ArrayList<>(wrapper);
        all.add(binary);
        all.addAll(args);
        return List.copyOf(all);
    }

    /** A value for a QEMU option string: commas are doubled, which is how QEMU escapes them. */
    public static String escape(String value) {
        return value.replace(",", ",,");
    }

    @Override
    public String toString() {
        return String.join(" ", build());
    }
}
