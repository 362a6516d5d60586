package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.KilnException;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.os.UnixSocket;
import dev.kiln.support.JsonFramer;

import java.time.Duration;
import java.util.ArrayDeque;

/**
 * A short, synchronous QMP session on a raw socket, for the one thing the JDK's channels cannot do:
 * sending a file descriptor with a command (SCM_RIGHTS). Used on a monitor Kiln keeps for this alone.
 */
final class FdMonitor {
    private final Fd socket;
    private final ArrayDeque<ObjectNode> inbox = new ArrayDeque<>();
    private final JsonFramer framer = new JsonFramer(inbox::add);

    private FdMonitor(Fd socket) {
        this.socket = socket;
    }

    /** Reads the greeting and negotiates capabilities. */
    static FdMonitor open(Fd socket) {
        FdMonitor mon = new FdMonitor(socket);
        mon.readMessage();
        mon.execute("qmp_capabilities", null);
        return mon;
    }

    /** How long one reply may take; a wedged QEMU must not hang the caller. */
    static final Duration REPLY_TIMEOUT = Duration.ofSeconds(30);

    ObjectNode readMessage() {
        byte[] buf = new byte[8192];
        while (inbox.isEmpty()) {
            if (!Posix.awaitReadable(socket, REPLY_TIMEOUT)) {
                throw new KilnException("QEMU did not answer on the fd-passing monitor within " + REPLY_TIMEOUT);
            }
            int n = Posix.read(socket, buf, 0, buf.length);
            if (n == 0) throw new KilnException("QEMU closed the fd-passing monitor");
            framer.feed(buf, 0, n);
        }
        return inbox.removeFirst();
    }

    JsonNode execute(String command, ObjectNode arguments) {
        byte[] msg = JsonFramer.toBytes(message(command, arguments));
        Posix.writeFully(socket, msg, 0, msg.length);
        return reply(command);
    }

    JsonNode executeWithFd(String command, ObjectNode arguments, Fd fd) {
        UnixSocket.sendWithFds(socket, JsonFramer.toBytes(message(command, arguments)), fd);
        return reply(command);
    }

    private static ObjectNode message(String command, ObjectNode arguments) {
        ObjectNode m = JsonNodeFactory.instance.objectNode().put("execute", command);
        if (arguments != null) m.set("arguments", arguments);
        return m;
    }

    private JsonNode reply(String command) {
        while (true) {
            ObjectNode m = readMessage();
            if (m.has("event")) continue;
            JsonNode err = m.get("error");
            if (err != null) throw new QmpException(command, err.path("class").asText(), err.path("desc").asText(), m);
            return m.get("return");
        }
    }
}
