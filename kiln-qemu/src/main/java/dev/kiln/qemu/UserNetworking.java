package dev.kiln.qemu;

import dev.kiln.KilnException;
import dev.kiln.Nic;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A machine's user-mode (SLIRP) network as QEMU runs it: which host ports forward to which guest ports, read back
 * from QEMU ({@code info usernet}), so that ports the kernel picked (host port 0) are known without the race of
 * probing for a free port first; and forwards added while the machine runs ({@code hostfwd_add}).
 */
final class UserNetworking {
    // e.g. "  TCP[HOST_FORWARD]  13       127.0.0.1 40423      10.42.0.10    80     0     0"
    private static final Pattern FORWARD_LINE =
            Pattern.compile("TCP\\[HOST_FORWARD\\]\\s+\\d+\\s+\\S+\\s+(\\d+)\\s+\\S+\\s+(\\d+)");

    private final String machineId;
    private final Supplier<Qmp> qmp;
    private volatile Map<Integer, Integer> hostPorts = Map.of(); // guest port → host port

    UserNetworking(String machineId, Supplier<Qmp> qmp) {
        this.machineId = machineId;
        this.qmp = qmp;
    }

    /** Reads the forwards QEMU has bound. */
    void readForwards() {
        Map<Integer, Integer> found = new TreeMap<>();
        for (int[] f : boundForwards()) found.put(f[1], f[0]);
        hostPorts = Map.copyOf(found);
    }

    /** The TCP forwards QEMU has bound, as {host port, guest port} pairs. */
    private List<int[]> boundForwards() {
        String info = hmp("info usernet");
        List<int[]> found = new ArrayList<>();
        Matcher m = FORWARD_LINE.matcher(info);
        while (m.find()) found.add(new int[] {Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2))});
        return found;
    }

    private String hmp(String command) {
        return qmp.get().execute("human-monitor-command", QmpArgs.of("command-line", command)).asText();
    }

    int hostPort(int guestPort) {
        Integer p = hostPorts.get(guestPort);
        if (p == null) {
            throw new KilnException("machine " + machineId + " forwards no host port to guest port " + guestPort
                    + " (forwards, guest→host: " + hostPorts + "); add one with forward(...) or addForward");
        }
        return p;
    }

    Map<Integer, Integer> hostPorts() {
        return hostPorts;
    }

    /** Adds a forward while the machine runs; returns the host port QEMU bound. */
    synchronized int addForward(int guestPort, int hostPort) {
        Nic.Forward f = new Nic.Forward(guestPort, hostPort);
        Set<Integer> known = new HashSet<>();
        boundForwards().forEach(b -> known.add(b[0]));
        String out = hmp("hostfwd_add " + QemuArguments.USER_NETDEV + " " + QemuArguments.hostfwd(f));
        if (!out.isBlank()) throw new KilnException("QEMU refused to forward guest port " + guestPort + ": " + out.strip());
        // The new forward is the one whose host port was not bound before (a guest port may have several).
        int added = boundForwards().stream().filter(b -> b[1] == guestPort && !known.contains(b[0])).mapToInt(b -> b[0])
                .findFirst().orElseThrow(() -> new KilnException("QEMU took the forward of guest port " + guestPort
                        + " but does not list it in info usernet"));
        Map<Integer, Integer> now = new TreeMap<>(hostPorts);
        now.put(guestPort, added);
        hostPorts = Map.copyOf(now);
        return added;
    }
}
