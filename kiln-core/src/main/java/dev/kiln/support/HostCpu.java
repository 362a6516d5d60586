package dev.kiln.support;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Facts about the host CPU that guest kernel arguments need. */
public final class HostCpu {
    private static volatile long tscKhz = -1;

    private HostCpu() {}

    /** The CPU's model name from /proc/cpuinfo, or "unknown". */
    public static String model() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).strip();
            }
        } catch (IOException e) {
            // unknown
        }
        return "unknown";
    }

    /** The TSC frequency in kHz from /proc/cpuinfo's "cpu MHz", or 0 when unknown. */
    public static long tscKhz() {
        long v = tscKhz;
        if (v >= 0) return v;
        v = 0;
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("cpu MHz")) {
                    v = Math.round(Double.parseDouble(line.substring(line.indexOf(':') + 1).trim()) * 1000);
                    break;
                }
            }
        } catch (IOException | NumberFormatException e) {
            v = 0;
        }
        tscKhz = v;
        return v;
    }
}
