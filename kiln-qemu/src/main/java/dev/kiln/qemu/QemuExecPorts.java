package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.Event;
import dev.kiln.KilnException;
import dev.kiln.agent.ExecPorts;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Supplier;

/**
 * QEMU's exec ports: virtio-serial ports whose chardevs are unix sockets QEMU listens on. A guest closing a port is
 * QEMU's {@code VSERPORT_CHANGE} event; whether QEMU has passed on all the guest wrote to a port is its transmit queue
 * having no element in flight and none left to take ({@code x-query-virtio-queue-status}): QEMU writes an element's
 * bytes to the socket before it hands the element back.
 */
final class QemuExecPorts implements ExecPorts {
    /** The id of Kiln's virtio-serial device. */
    static final String SERIAL_ID = "kiln-vser";
    private static final String[] ROLE_SUFFIX = {"ctl", "in", "out", "err"};

    private final int slots;
    private final List<Path> sockets;
    private final Map<Integer, SocketChannel> accepted = new ConcurrentHashMap<>();
    private final Supplier<Qmp> qmp;
    private final Map<String, List<Runnable>> closeListeners = new ConcurrentHashMap<>();
    private final Map<String, Integer> queues = new ConcurrentHashMap<>();
    private volatile String devicePath;

    QemuExecPorts(int slots, List<Path> sockets, Supplier<Qmp> qmp) {
        this.slots = slots;
        this.sockets = List.copyOf(sockets);
        this.qmp = qmp;
    }

    /**
     * Connects every port now and waits until QEMU has taken every connection ({@code query-chardev}), so that a
     * restored guest's state loads with them connected; {@link #connect} hands them out later.
     */
    void connectAll(Deadline deadline) throws IOException {
        for (int i = 0; i < sockets.size(); i++) {
            if (!accepted.containsKey(i)) accepted.put(i, open(i));
        }
        Qmp q = qmp.get();
        while (true) {
            List<String> waiting = new java.util.ArrayList<>();
            for (JsonNode c : q.execute("query-chardev", null, deadline.remaining())) {
                if (c.path("label").asText().startsWith("exec") && c.path("filename").asText().startsWith("disconnected:")) {
                    waiting.add(c.path("label").asText());
                }
            }
            if (waiting.isEmpty()) return;
            if (deadline.expired()) throw new KilnException("QEMU did not take Kiln's connections to " + waiting + " in time");
            Thread.onSpinWait(); // QEMU takes them in its main loop, at once: ask again
        }
    }

    /** Port i of the command line: slot i / 4, role i % 4. */
    static String portId(int i) {
        return "kiln-x" + i / 4 + ROLE_SUFFIX[i % 4].charAt(0);
    }

    static String portName(int i) {
        return "kiln.exec." + i / 4 + "." + ROLE_SUFFIX[i % 4];
    }

    private static int index(int slot, Role role) {
        return slot * 4 + role.ordinal();
    }

    /** Takes QEMU's VSERPORT_CHANGE events (from the QMP reader). */
    void portChanged(Event e) {
        if (Boolean.FALSE.equals(e.data().get("open"))) {
            List<Runnable> l = closeListeners.get(String.valueOf(e.text("id")));
            if (l != null) l.forEach(Runnable::run);
        }
    }

    @Override
    public int slots() {
        return slots;
    }

    @Override
    public String name(int slot, Role role) {
        return portName(index(slot, role));
    }

    @Override
    public SocketChannel connect(int slot, Role role) throws IOException {
        int i = index(slot, role);
        SocketChannel ready = accepted.remove(i);
        return ready != null ? ready : open(i);
    }

    private SocketChannel open(int i) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.connect(UnixDomainSocketAddress.of(sockets.get(i)));
            return ch;
        } catch (IOException e) {
            ch.close();
            throw e;
        }
    }

    @Override
    public void onGuestClose(int slot, Role role, Runnable listener) {
        closeListeners.computeIfAbsent(portId(index(slot, role)), k -> new CopyOnWriteArrayList<>()).add(listener);
    }

    @Override
    public boolean drained(int slot, Role role, Duration timeout) {
        Qmp q = qmp.get();
        String id = portId(index(slot, role));
        int queue = queues.computeIfAbsent(id, k -> {
            // Port n >= 1 sends on queue 3 + 2n (queues 0, 1 are port 0's, 2 and 3 the control queues).
            int nr = q.execute("qom-get", JsonFramer.JSON.createObjectNode().put("path", "/machine/peripheral/" + k)
                    .put("property", "nr"), timeout).asInt();
            return nr == 0 ? 1 : 3 + 2 * nr;
        });
        JsonNode s = q.execute("x-query-virtio-queue-status", JsonFramer.JSON.createObjectNode().put("path", devicePath(q, timeout))
                .put("queue", queue), timeout);
        return s.path("inuse").asInt(-1) == 0
                && (!s.has("last-avail-idx") || s.path("last-avail-idx").asInt() == s.path("shadow-avail-idx").asInt());
    }

    /** The QOM path of the virtio-serial device's virtio part (on PCI, a child of the PCI device). */
    private String devicePath(Qmp q, Duration timeout) {
        String p = devicePath;
        if (p != null) return p;
        String prefix = "/machine/peripheral/" + SERIAL_ID;
        for (JsonNode d : q.execute("x-query-virtio", JsonFramer.JSON.createObjectNode(), timeout)) {
            String path = d.path("path").asText();
            if (path.equals(prefix) || path.startsWith(prefix + "/")) return devicePath = path;
        }
        throw new KilnException("QEMU lists no virtio device under " + prefix + " (x-query-virtio)");
    }

    /** Closes the connections made by {@link #connectAll} that no slot took. */
    void close() {
        accepted.values().forEach(QemuDriver::closeQuietly);
        accepted.clear();
    }

    @Override
    public String toString() {
        return slots + " exec slots";
    }
}
