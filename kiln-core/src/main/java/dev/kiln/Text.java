package dev.kiln;

import java.time.Duration;

/** Small text helpers for messages. */
public final class Text {
    private Text() {}

    /** The last {@code max} characters of {@code s}, marked when cut. */
    public static String tail(String s, int max) {
        if (s == null) return "";
        return s.length() <= max ? s : "…" + s.substring(s.length() - max);
    }

    /** A duration the way a person reads it: 250 ms, 1.5 s, 2 min 5 s. */
    public static String human(Duration d) {
        long ms = d.toMillis();
        if (ms < 1000) return ms + " ms";
        if (ms < 60_000) return String.format(java.util.Locale.ROOT, "%.1f", ms / 1000.0).replaceAll("\\.0$", "") + " s";
        return (ms / 60_000) + " min " + (ms % 60_000) / 1000 + " s";
    }

    /** A size the way a person reads it: 512 B, 64 KiB, 1.5 GiB. */
    public static String bytes(long n) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = n;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return (u == 0 ? Long.toString(n) : String.format(java.util.Locale.ROOT, "%.1f", v).replaceAll("\\.0$", "")) + " " + units[u];
    }
}
