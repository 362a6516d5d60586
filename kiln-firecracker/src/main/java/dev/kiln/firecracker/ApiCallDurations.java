package dev.kiln.firecracker;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads the API server's own timing from a Debug-level Firecracker log: each request line ("The API server
 * received a Put request on "/drives/rootfs" with body …") is followed by "Total previous API call duration:
 * N us." Calls to {@code /snapshot/create} are exempt: writing guest memory takes as long as it takes.
 */
public final class ApiCallDurations {
    private static final Pattern REQUEST = Pattern.compile(
            "] The API server received a (?<method>\\w+) request on \"(?<path>(/[\\w-]*)+)\"( with body (?<body>.*))?\\.$");
    private static final Pattern DURATION = Pattern.compile("] Total previous API call duration: (?<us>\\d+) us\\.$");

    /** One API call as the log reports it. */
    public record Call(String method, String path, String body, Duration duration) {
        @Override
        public String toString() {
            return method + " " + path + " took " + duration.toNanos() / 1000 + " µs" + (body == null ? "" : " (body " + body + ")");
        }
    }

    private ApiCallDurations() {}

    /** The calls in {@code log}, in order; fails when the log has a request without its duration or the reverse. */
    public static List<Call> parse(String log) {
        List<Call> calls = new ArrayList<>();
        String[] current = null;
        for (String line : log.split("\n")) {
            Matcher r = REQUEST.matcher(line);
            if (r.find()) {
                if (current != null) {
                    throw new IllegalStateException("the log has no duration for " + current[0] + " " + current[1]
                            + " before the next request; is the log level Debug?");
                }
                current = new String[] {r.group("method"), r.group("path"), r.group("body")};
                continue;
            }
            Matcher d = DURATION.matcher(line);
            if (d.find()) {
                if (current == null) throw new IllegalStateException("the log has an API call duration before any request: " + line);
                calls.add(new Call(current[0], current[1], current[2], Duration.ofNanos(Long.parseLong(d.group("us")) * 1000)));
                current = null;
            }
        }
        return calls;
    }

    /** The calls that took longer than {@code max} (snapshot creation exempt). */
    public static List<Call> slowerThan(String log, Duration max) {
        return parse(log).stream().filter(c -> !c.path().equals("/snapshot/create"))
                .filter(c -> c.duration().compareTo(max) > 0).toList();
    }
}
