package dev.kiln;

import dev.kiln.support.Deadline;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/** The probes of {@link Probe}'s factories. */
final class ReadinessProbes {
    private ReadinessProbes() {}

    /** Probes that can only ask again wait this long at first, doubling up to {@link #MAX_PAUSE}. */
    private static final Duration FIRST_PAUSE = Duration.ofMillis(20);
    private static final Duration MAX_PAUSE = Duration.ofSeconds(1);
    private static final Duration ONE_CALL = Duration.ofSeconds(10);

    static final Probe IMAGE_READY = new Probe() {
        @Override
        public void await(Machine machine, Duration timeout) {
            GuestImage image = machine.image().orElse(null);
            if (image == null) return;
            Deadline deadline = Deadline.after(timeout);
            if (image.readyMarker() != null) {
                new ConsoleMatches(Pattern.compile(Pattern.quote(image.readyMarker()))).await(machine, timeout);
            }
            if (image.agent()) AGENT.await(machine, deadline.remaining());
        }

        @Override
        public String description() {
            return "the image's ready marker and agent";
        }

        @Override
        public String toString() {
            return description();
        }
    };

    static final Probe AGENT = new Probe() {
        @Override
        public void await(Machine machine, Duration timeout) {
            machine.guest().awaitReady(timeout);
        }

        @Override
        public String description() {
            return "the guest agent";
        }

        @Override
        public String toString() {
            return description();
        }
    };

    record ConsoleMatches(Pattern pattern) implements Probe {
        @Override
        public void await(Machine machine, Duration timeout) {
            machine.console().cursorAtStart().await(pattern, timeout);
        }

        @Override
        public String description() {
            return "/" + pattern.pattern() + "/ on the console";
        }
    }

    record VmmLogMatches(Pattern pattern) implements Probe {
        @Override
        public void await(Machine machine, Duration timeout) {
            machine.awaitVmmLog(pattern, timeout);
        }

        @Override
        public String description() {
            return "/" + pattern.pattern() + "/ in the VMM's log";
        }
    }

    record Command(List<String> argv) implements Probe {
        Command {
            argv = List.copyOf(argv);
            if (argv.isEmpty()) throw new IllegalArgumentException("a command probe needs a command");
        }

        @Override
        public void await(Machine machine, Duration timeout) {
            retry(description(), timeout, left -> {
                ExecResult r = machine.guest().exec(ExecRequest.of(argv).timeout(min(left, ONE_CALL)).build());
                return r.exitCode() == 0 ? null : "exit code " + r.exitCode() + outputOf(r);
            });
        }

        @Override
        public String description() {
            return "command " + argv + " to succeed in the guest";
        }
    }

    record GuestPort(int port) implements Probe {
        GuestPort {
            checkPort(port);
        }

        @Override
        public void await(Machine machine, Duration timeout) {
            retry(description(), timeout, left -> listening(machine.guest(), port, left));
        }

        @Override
        public String description() {
            return "a listener on TCP port " + port + " in the guest";
        }
    }

    record HostPort(int port) implements Probe {
        HostPort {
            checkPort(port);
        }

        @Override
        public void await(Machine machine, Duration timeout) {
            InetSocketAddress address = machine.hostAddress(port);
            retry(description() + " (" + address + ")", timeout, left -> {
                String inGuest = listening(machine.guest(), port, left);
                return inGuest != null ? inGuest : connects(address);
            });
        }

        @Override
        public String description() {
            return "guest TCP port " + port + " reachable from the host";
        }
    }

    record Http(int port, String path, int status) implements Probe {
        Http {
            checkPort(port);
            if (path == null || !path.startsWith("/")) throw new IllegalArgumentException("an HTTP probe's path starts with '/', got '" + path + "'");
            if (status < 100 || status > 599) throw new IllegalArgumentException("not an HTTP status: " + status);
        }

        @Override
        public void await(Machine machine, Duration timeout) {
            URI uri = URI.create("http://" + machine.hostAddress(port).getHostString() + ":"
                    + machine.hostAddress(port).getPort() + path);
            try (HttpClient client = HttpClient.newBuilder().connectTimeout(ONE_CALL).build()) {
                retry(description() + " (" + uri + ")", timeout, left -> {
                    HttpRequest request = HttpRequest.newBuilder(uri).timeout(min(left, ONE_CALL)).GET().build();
                    try {
                        HttpResponse<String> r = client.send(request, HttpResponse.BodyHandlers.ofString());
                        return r.statusCode() == status ? null
                                : "status " + r.statusCode() + ", body: " + Text.tail(r.body(), 300);
                    } catch (IOException e) {
                        return e.toString();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new KilnException("interrupted while probing " + uri, e);
                    }
                });
            }
        }

        @Override
        public String description() {
            return "HTTP " + status + " from GET " + path + " on guest port " + port;
        }
    }

    record AllOf(List<Probe> probes) implements Probe {
        AllOf {
            probes = List.copyOf(probes);
        }

        @Override
        public void await(Machine machine, Duration timeout) {
            Deadline deadline = Deadline.after(timeout);
            for (Probe p : probes) p.await(machine, deadline.remaining());
        }

        @Override
        public String description() {
            return "all of " + probes.stream().map(Probe::description).toList();
        }
    }

    record Limited(Probe probe, Duration limit) implements Probe {
        @Override
        public void await(Machine machine, Duration timeout) {
            probe.await(machine, min(timeout, limit));
        }

        @Override
        public String description() {
            return probe.description() + " within " + Text.human(limit);
        }
    }

    static Probe limited(Probe probe, Duration limit) {
        if (limit.isNegative() || limit.isZero()) throw new IllegalArgumentException("a probe's timeout must be positive, got " + limit);
        return new Limited(probe, limit);
    }

    /** One attempt: null when the awaited state holds, else what was seen instead. */
    interface Attempt {
        String run(Duration left);
    }

    /** Asks until an attempt succeeds or time runs out; the timeout says what was seen last. */
    static void retry(String awaited, Duration timeout, Attempt attempt) {
        Deadline deadline = Deadline.after(timeout);
        long pause = FIRST_PAUSE.toNanos();
        String seen = "nothing yet";
        while (true) {
            Duration remaining = deadline.remaining();
            if (remaining.isZero()) throw new WaitTimeoutException(awaited, timeout, seen);
            try {
                seen = attempt.run(remaining);
                if (seen == null) return;
            } catch (WaitTimeoutException e) {
                seen = e.getMessage();
            } catch (GuestException e) {
                seen = e.getMessage(); // the agent is not up yet, say: ask again
            }
            try {
                TimeUnit.NANOSECONDS.sleep(Math.min(pause, deadline.remainingNanos()));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new KilnException("interrupted while waiting for " + awaited, e);
            }
            pause = Math.min(pause * 2, MAX_PAUSE.toNanos());
        }
    }

    /** Null when a socket in the guest listens on {@code port} (LISTEN is state 0A in /proc/net/tcp). */
    static String listening(Guest guest, int port, Duration left) {
        ExecResult r = guest.exec(ExecRequest.of("cat", "/proc/net/tcp", "/proc/net/tcp6")
                .timeout(min(left, ONE_CALL)).build());
        String hexPort = String.format(Locale.ROOT, ":%04X", port);
        for (String line : r.stdoutText().split("\n")) {
            String[] f = line.strip().split("\\s+");
            if (f.length > 3 && f[1].endsWith(hexPort) && f[3].equals("0A")) return null;
        }
        return "no listener on port " + port + " in the guest's /proc/net/tcp{,6}";
    }

    /**
     * Null when a connection to {@code address} is accepted and stays open a moment: a user-mode network's forward
     * accepts on the host even when nothing listens in the guest, then closes at once.
     */
    private static String connects(InetSocketAddress address) {
        try (SocketChannel ch = SocketChannel.open(address)) {
            ch.socket().setSoTimeout(200);
            try (InputStream in = ch.socket().getInputStream()) {
                int b = in.read();
                return b < 0 ? "the host end " + address + " accepted and closed at once" : null;
            } catch (java.net.SocketTimeoutException stillOpen) {
                return null;
            }
        } catch (IOException e) {
            return "cannot connect to " + address + ": " + e.getMessage();
        }
    }

    static String outputOf(ExecResult r) {
        String out = r.stdoutText().strip(), err = r.stderrText().strip();
        return (out.isEmpty() ? "" : ", stdout: " + Text.tail(out, 300)) + (err.isEmpty() ? "" : ", stderr: " + Text.tail(err, 300));
    }

    static void checkPort(int port) {
        if (port < 1 || port > 65535) throw new IllegalArgumentException("TCP port out of range: " + port);
    }

    static Duration min(Duration a, Duration b) {
        return a.compareTo(b) <= 0 ? a : b;
    }
}
