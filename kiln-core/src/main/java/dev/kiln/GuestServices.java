package dev.kiln;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The service helpers of {@link Guest}: commands that must succeed or fail, and waits on units, ports and files. */
final class GuestServices {
    private GuestServices() {}

    static String succeed(Guest guest, String shellCommand, Duration timeout) {
        return guest.exec(sh(shellCommand, timeout)).orThrow().stdoutText();
    }

    static String fail(Guest guest, String shellCommand, Duration timeout) {
        ExecResult r = guest.exec(sh(shellCommand, timeout));
        if (r.succeeded()) {
            throw new CommandFailedException("command [" + shellCommand + "] succeeded, and it was expected to fail" + r.output(), r);
        }
        return r.stdoutText() + r.stderrText();
    }

    static String waitUntilSucceeds(Guest guest, String shellCommand, Duration timeout) {
        String[] out = new String[1];
        ReadinessProbes.retry("[" + shellCommand + "] to succeed in the guest", timeout, left -> {
            ExecResult r = guest.exec(sh(shellCommand, ReadinessProbes.min(left, ONE_CALL)));
            if (!r.succeeded()) return "exit code " + r.exitCode() + ReadinessProbes.outputOf(r);
            out[0] = r.stdoutText();
            return null;
        });
        return out[0];
    }

    static String waitUntilFails(Guest guest, String shellCommand, Duration timeout) {
        String[] out = new String[1];
        ReadinessProbes.retry("[" + shellCommand + "] to fail in the guest", timeout, left -> {
            ExecResult r = guest.exec(sh(shellCommand, ReadinessProbes.min(left, ONE_CALL)));
            if (r.succeeded()) return "it still succeeds" + ReadinessProbes.outputOf(r);
            out[0] = r.stdoutText() + r.stderrText();
            return null;
        });
        return out[0];
    }

    static void waitForFile(Guest guest, String path, Duration timeout) {
        ReadinessProbes.retry("file " + path + " in the guest", timeout, left -> {
            ExecResult r = guest.exec(ExecRequest.of("test", "-e", path).timeout(ReadinessProbes.min(left, ONE_CALL)).build());
            return r.succeeded() ? null : "no " + path;
        });
    }

    static void waitForOpenPort(Guest guest, int port, Duration timeout) {
        ReadinessProbes.checkPort(port);
        ReadinessProbes.retry("a listener on TCP port " + port + " in the guest", timeout,
                left -> ReadinessProbes.listening(guest, port, left));
    }

    /**
     * Waits until {@code unit} is active, as the NixOS test driver does: fails at once, with the unit's status and
     * journal, when it failed, does not exist, or is inactive with no job pending (nothing will start it).
     */
    static void waitForUnit(Guest guest, String unit, Duration timeout) {
        if (unit == null || unit.isBlank() || unit.startsWith("-")) throw new IllegalArgumentException("not a unit name: '" + unit + "'");
        ReadinessProbes.retry("unit " + unit + " to be active", timeout, left -> {
            Map<String, String> p = unitProperties(guest, unit, ReadinessProbes.min(left, ONE_CALL));
            String active = p.getOrDefault("ActiveState", "?");
            if (active.equals("active")) return null;
            if ("not-found".equals(p.get("LoadState"))) throw unitProblem(guest, unit, "does not exist (LoadState=not-found)");
            if (active.equals("failed")) throw unitProblem(guest, unit, "failed (" + p.get("Result") + ")");
            if (active.equals("inactive")) {
                String jobs = guest.exec(ExecRequest.of("systemctl", "list-jobs", "--full", "--no-pager").timeout(ONE_CALL).build()).stdoutText();
                if (!jobs.contains(unit) && unitProperties(guest, unit, ONE_CALL).getOrDefault("ActiveState", "?").equals("inactive")) {
                    throw unitProblem(guest, unit, "is inactive and no job is pending to start it (is it enabled? systemctl start "
                            + unit + ")");
                }
            }
            return "ActiveState=" + active + ", SubState=" + p.get("SubState");
        });
    }

    private static Map<String, String> unitProperties(Guest guest, String unit, Duration timeout) {
        ExecResult r = guest.exec(ExecRequest.of("systemctl", "show", unit, "--no-pager",
                "--property=LoadState,ActiveState,SubState,Result").timeout(timeout).build()).orThrow();
        Map<String, String> p = new LinkedHashMap<>();
        for (String line : r.stdoutText().split("\n")) {
            int eq = line.indexOf('=');
            if (eq > 0) p.put(line.substring(0, eq), line.substring(eq + 1).strip());
        }
        return p;
    }

    private static KilnException unitProblem(Guest guest, String unit, String what) {
        String status = quietly(guest, List.of("systemctl", "status", unit, "--no-pager", "--full", "--lines=0"));
        String journal = quietly(guest, List.of("journalctl", "--unit", unit, "--no-pager", "--lines=30", "--boot"));
        return new KilnException("unit " + unit + " " + what + "\n  status:\n    " + status.strip().replace("\n", "\n    ")
                + "\n  journal (last 30 lines):\n    " + Text.tail(journal, 4000).strip().replace("\n", "\n    "));
    }

    private static String quietly(Guest guest, List<String> argv) {
        try {
            ExecResult r = guest.exec(ExecRequest.of(argv).timeout(ONE_CALL).build());
            return r.stdoutText() + r.stderrText();
        } catch (KilnException e) {
            return "(" + e.getMessage() + ")";
        }
    }

    static ExecRequest sh(String shellCommand, Duration timeout) {
        if (shellCommand == null || shellCommand.isBlank()) throw new IllegalArgumentException("the command is empty");
        return ExecRequest.of("sh", "-c", shellCommand).timeout(timeout).build();
    }

    private static final Duration ONE_CALL = Duration.ofSeconds(10);
}
