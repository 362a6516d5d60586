package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.Guest;
import dev.kiln.GuestException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.KilnException;
import dev.kiln.Text;
import dev.kiln.agent.QgaChannel.Closed;
import dev.kiln.agent.QgaChannel.Garbage;
import dev.kiln.agent.QgaChannel.Inbound;
import dev.kiln.agent.QgaChannel.Reply;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

/**
 * A client of qemu-guest-agent (the QGA protocol) over a byte stream: a virtio-serial port behind a QEMU
 * unix-socket chardev, a Firecracker vsock, or a host agent in tests.
 *
 * <p>The agent answers one request at a time and its replies carry no ids, so requests are serialised
 * and, whenever the stream may be out of step (a new connection, a timed-out request, garbage), the next
 * request is preceded by {@code guest-sync-delimited} with a fresh random id, discarding every reply up to
 * the one carrying it.
 *
 * <p>The request's environment is added to the agent's own (the agent's {@code env} argument replaces the
 * whole environment; the agent's is read once from {@code /proc/self/environ} of a child).
 */
public final class QgaGuest implements Guest, AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(QgaGuest.class);

    /** Default wait for one raw request ({@link #ping()}, {@link #info()}). */
    public static final Duration DEFAULT_CALL_TIMEOUT = Duration.ofSeconds(30);
    /** Default limit on a whole {@link #copyIn}/{@link #copyOut}. */
    public static final Duration DEFAULT_COPY_TIMEOUT = Duration.ofMinutes(5);

    /** Raw bytes per guest-file-write: a 1.4 MB message, parsed by the agent's JSON lexer byte by byte. */
    static final int WRITE_CHUNK = 1 << 20;
    /** Bytes per guest-file-read; the agent allocates the whole count up front (it accepts up to 48 MiB). */
    static final int READ_CHUNK = 4 << 20;
    private static final Duration SYNC_RESEND = Duration.ofMillis(200);
    private static final Duration WRITE_FLOOR = Duration.ofSeconds(10);
    private static final Duration KILL_BUDGET = Duration.ofSeconds(5);
    private static final Duration REAP_WAIT = Duration.ofSeconds(2);
    private static final Duration SHUTDOWN_REPLY_WAIT = Duration.ofMillis(500);
    private static final Duration STATUS_FLOOR = Duration.ofSeconds(2);
    // Each guest-exec-status poll costs guest CPU (the agent runs on the guest's vCPUs), so polling too
    // eagerly slows the very command being waited for. Tunable: kiln.qga.firstPollMicros, kiln.qga.maxPollMicros.
    private static final long FIRST_BACKOFF_NANOS = Long.getLong("kiln.qga.firstPollMicros", 200) * 1000;
    private static final long MAX_BACKOFF_NANOS = Long.getLong("kiln.qga.maxPollMicros", 10_000) * 1000;
    private static final String FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    /** Runs argv in a directory without interpolating anything: both travel as positional parameters. */
    private static final String CD_AND_EXEC = "cd \"$1\" || exit 126; shift; exec \"$@\"";
    /**
     * Prints $1 and its descendants, each stopped first so it cannot fork more, then SIGKILLs them all.
     * POSIX sh over /proc/PID/status (busybox ash and dash alike); no pkill or ps needed.
     */
    private static final String KILL_TREE = """
            tree() {
              kill -STOP "$1" 2>/dev/null
              for f in /proc/[0-9]*/status; do
                p=${f#/proc/}; p=${p%/status}
                while read -r k v; do
                  if [ "$k" = PPid: ]; then [ "$v" = "$1" ] && tree "$p"; break; fi
                done < "$f"
              done 2>/dev/null
              echo "$1"
            }
            kill -9 $(tree "$1")
            """;

    private final Supplier<SocketChannel> connector;
    private final Supplier<String> consoleTail;
    private final String name;
    private final Supplier<String> vmmState;
    private final ReentrantLock lock = new ReentrantLock();

    private volatile QgaChannel channel;   // written under lock
    private boolean inStep;                // guarded by lock
    private volatile boolean closed;
    private volatile Map<String, String> agentEnvironment;

    /**
     * @param connector   opens a fresh connected channel to the agent (called again by {@link #awaitReady}
     *                    after failures); may throw
     * @param consoleTail the console's last output, for error messages; may be null
     * @param name        names the guest in messages and thread names
     */
    public QgaGuest(Supplier<SocketChannel> connector, Supplier<String> consoleTail, String name) {
        this(connector, consoleTail, null, name);
    }

    /**
     * @param vmmState says what became of the VMM (e.g. "QEMU exited: killed by signal 9"), or null while it
     *                 runs; added to errors when the connection closes or the agent falls silent. May be null.
     */
    public QgaGuest(Supplier<SocketChannel> connector, Supplier<String> consoleTail, Supplier<String> vmmState,
                    String name) {
        this.connector = Objects.requireNonNull(connector, "connector");
        this.consoleTail = consoleTail == null ? () -> "" : consoleTail;
        this.vmmState = vmmState == null ? () -> null : vmmState;
        this.name = Objects.requireNonNull(name, "name");
    }

    public String name() { return name; }

    // ---------------------------------------------------------------- readiness and raw calls

    /**
     * Connects (retrying while the socket is missing or refuses) and sends {@code guest-sync-delimited}
     * every 200 ms until the agent answers it: the agent may not be listening yet, and QEMU drops bytes
     * written to a virtio-serial port nobody has open. Reconnects when the connection closed.
     */
    @Override
    public QgaGuest awaitReady(Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        RuntimeException last = null;
        while (!deadline.expired()) {
            ensureNotClosed();
            if (!tryLock(deadline)) break;
            try {
                QgaChannel ch = channel;
                if (ch == null || ch.closed() != null) ch = connect();
                sync(ch, deadline, "");
                return this;
            } catch (WaitTimeoutException e) {
                break;
            } catch (RuntimeException e) {
                last = e; // no socket yet, refused, or the connection closed under us: try again
                log.debug("guest agent of {} not ready yet: {}", name, e.toString());
            } finally {
                lock.unlock();
            }
            pause(Math.min(TimeUnit.MILLISECONDS.toNanos(50), deadline.remainingNanos()));
        }
        throw new WaitTimeoutException("guest agent to answer guest-sync", timeout, consoleTail.get(), last);
    }

    /**
     * Sends one command and returns its {@code return} value; throws {@link GuestException} with the
     * agent's error class and description, or {@link WaitTimeoutException}.
     */
    public JsonNode call(String command, ObjectNode args, Duration timeout) {
        return request(command, args, Deadline.after(timeout), "");
    }

    /** {@code guest-ping}. */
    public void ping() {
        call("guest-ping", null, DEFAULT_CALL_TIMEOUT);
    }

    /** {@code guest-info}: the agent's version and its commands. */
    public JsonNode info() {
        return call("guest-info", null, DEFAULT_CALL_TIMEOUT);
    }

    // ---------------------------------------------------------------- exec

    @Override
    public ExecResult exec(ExecRequest req) {
        long start = System.nanoTime();
        Deadline deadline = Deadline.after(req.timeout());
        String what = " of " + req.argv();
        ObjectNode args = JsonFramer.JSON.createObjectNode();
        List<String> argv = req.argv();
        if (req.workingDir() != null) {
            List<String> wrapped = new ArrayList<>(List.of("-c", CD_AND_EXEC, "sh", req.workingDir()));
            wrapped.addAll(argv);
            args.put("path", "/bin/sh");
            strings(args.putArray("arg"), wrapped);
        } else {
            args.put("path", argv.getFirst());
            strings(args.putArray("arg"), argv.subList(1, argv.size()));
        }
        if (!req.env().isEmpty()) {
            Map<String, String> env = new LinkedHashMap<>(agentEnvironment(deadline));
            env.putAll(req.env());
            ArrayNode array = args.putArray("env");
            env.forEach((k, v) -> array.add(k + "=" + v));
        }
        if (req.stdin() != null) args.put("input-data", Base64.getEncoder().encodeToString(req.stdin()));
        args.put("capture-output", true);

        long pid = spawn(args, deadline, what, req.argv());
        JsonNode status = awaitExit(pid, deadline, what);
        if (status == null) throw killAfterTimeout(pid, req);
        if (status.path("out-truncated").asBoolean() || status.path("err-truncated").asBoolean()) {
            throw new GuestException("the guest agent of " + name + " truncated the "
                    + (status.path("out-truncated").asBoolean() ? "stdout" : "stderr") + " of " + req.argv()
                    + " (qemu-ga keeps at most 16 MiB per stream): write large output to a file and copyOut it");
        }
        int signal = status.path("signal").asInt(0);
        int exitCode = status.has("signal") ? 128 + signal : status.path("exitcode").asInt(-1);
        return new ExecResult(req.argv(), exitCode, signal, bytes(status, "out-data"), bytes(status, "err-data"),
                Duration.ofNanos(System.nanoTime() - start));
    }

    private long spawn(ObjectNode args, Deadline deadline, String what, List<String> argv) {
        try {
            JsonNode ret = request("guest-exec", args, deadline, what);
            if (!ret.path("pid").canConvertToLong()) {
                throw new GuestException("guest agent of " + name + " answered guest-exec" + what + " without a pid: " + ret);
            }
            return ret.path("pid").asLong();
        } catch (AgentError e) {
            throw new GuestException("cannot run " + argv + " in " + name + ": " + e.desc + " (" + e.errorClass() + ")",
                    e.errorClass(), e);
        }
    }

    /** Polls guest-exec-status at once, then with a short doubling backoff; null when the deadline passed. */
    private JsonNode awaitExit(long pid, Deadline deadline, String what) {
        ObjectNode args = JsonFramer.JSON.createObjectNode().put("pid", pid);
        long backoff = FIRST_BACKOFF_NANOS;
        while (true) {
            // A status poll is answered at once by a live agent; give it a floor so that a poll made just
            // before the deadline does not pass for silence.
            Deadline pollBy = deadline.remainingNanos() < STATUS_FLOOR.toNanos() ? Deadline.after(STATUS_FLOOR) : deadline;
            JsonNode status = request("guest-exec-status", args, pollBy, what);
            if (status.path("exited").asBoolean()) return status;
            long left = deadline.remainingNanos();
            if (left == 0) return null;
            pause(Math.min(backoff, left));
            backoff = Math.min(backoff * 2, MAX_BACKOFF_NANOS);
        }
    }

    /**
     * There is no QGA kill: a shell in the guest stops the process and its descendants (found through
     * /proc, as {@code sh -c} commands fork), kills them all, and the victim is reaped for its last output.
     */
    private WaitTimeoutException killAfterTimeout(long pid, ExecRequest req) {
        Deadline budget = Deadline.after(KILL_BUDGET);
        String what = " to kill pid " + pid + " (" + req.argv() + ")";
        JsonNode last = null;
        KilnException problem = null;
        try {
            ObjectNode kill = JsonFramer.JSON.createObjectNode().put("path", "/bin/sh");
            strings(kill.putArray("arg"), List.of("-c", KILL_TREE, "sh", Long.toString(pid)));
            kill.put("capture-output", true);
            long killer = request("guest-exec", kill, budget, what).path("pid").asLong();
            awaitExit(killer, budget, what);
            Duration left = budget.remaining();
            last = awaitExit(pid, Deadline.after(left.compareTo(REAP_WAIT) < 0 ? left : REAP_WAIT),
                    " of " + req.argv() + " after kill -9");
        } catch (KilnException e) {
            problem = e;
        }
        StringBuilder seen = new StringBuilder();
        if (last != null) {
            seen.append(outputTail("stdout", bytes(last, "out-data"))).append(outputTail("stderr", bytes(last, "err-data")));
        }
        String console = consoleTail.get();
        if (console != null && !console.isBlank()) seen.append("console:\n").append(console);
        WaitTimeoutException e = new WaitTimeoutException("command " + req.argv() + " (pid " + pid
                + " in " + name + ") to finish; " + (last != null ? "killed it"
                        : "killed it, but something it started still holds its output open"), req.timeout(), seen.toString());
        if (problem != null) e.addSuppressed(problem);
        return e;
    }

    private static String outputTail(String stream, byte[] bytes) {
        if (bytes.length == 0) return "";
        return stream + ":\n" + Text.tail(new String(bytes, StandardCharsets.UTF_8), 1000).strip() + "\n";
    }

    /** The agent's own environment, which a request's env is added to; read once per connection. */
    private Map<String, String> agentEnvironment(Deadline deadline) {
        Map<String, String> env = agentEnvironment;
        if (env != null) return env;
        env = new LinkedHashMap<>();
        ObjectNode args = JsonFramer.JSON.createObjectNode().put("path", "cat");
        strings(args.putArray("arg"), List.of("/proc/self/environ"));
        args.put("capture-output", true);
        String what = " to read the agent's environment";
        JsonNode status;
        try {
            status = awaitExit(request("guest-exec", args, deadline, what).path("pid").asLong(), deadline, what);
        } catch (AgentError e) {
            status = null;
        }
        if (status == null && deadline.expired()) {
            throw new WaitTimeoutException("guest agent of " + name + " to report its environment", deadline.total(),
                    consoleTail.get());
        }
        if (status != null && status.path("exitcode").asInt(-1) == 0) {
            for (String entry : new String(bytes(status, "out-data"), StandardCharsets.UTF_8).split("\0")) {
                int eq = entry.indexOf('=');
                if (eq > 0) env.put(entry.substring(0, eq), entry.substring(eq + 1));
            }
        } else {
            log.debug("could not read the environment of the guest agent of {}; using a default PATH", name);
        }
        env.putIfAbsent("PATH", FALLBACK_PATH);
        agentEnvironment = Map.copyOf(env);
        return env;
    }

    // ---------------------------------------------------------------- files

    @Override
    public void copyIn(Path hostFile, String guestPath) {
        copyIn(hostFile, guestPath, DEFAULT_COPY_TIMEOUT);
    }

    /** Copies a host file into the guest (created or truncated) within {@code timeout} for the whole copy. */
    public void copyIn(Path hostFile, String guestPath, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        String what = " for " + guestPath;
        InputStream in;
        try {
            in = Files.newInputStream(hostFile);
        } catch (IOException e) {
            throw new KilnException("cannot read " + hostFile + " to copy it into " + name + ": " + e, e);
        }
        try (in) {
            long handle = openFile(guestPath, "wb", deadline);
            RuntimeException failure = null;
            try {
                byte[] buf = new byte[WRITE_CHUNK];
                Base64.Encoder b64 = Base64.getEncoder();
                int n;
                while ((n = in.readNBytes(buf, 0, buf.length)) > 0) {
                    int off = 0;
                    while (off < n) {
                        byte[] part = off == 0 && n == buf.length ? buf : Arrays.copyOfRange(buf, off, n);
                        ObjectNode args = JsonFramer.JSON.createObjectNode().put("handle", handle)
                                .put("buf-b64", b64.encodeToString(part)).put("count", part.length);
                        long written = request("guest-file-write", args, deadline, what).path("count").asLong();
                        if (written <= 0) {
                            throw new GuestException("guest agent of " + name + " wrote nothing to " + guestPath);
                        }
                        off += (int) written;
                    }
                }
            } catch (IOException e) {
                failure = new KilnException("cannot read " + hostFile + " to copy it into " + name + ": " + e, e);
            } catch (RuntimeException e) {
                failure = e;
            } finally {
                failure = closeFile(handle, guestPath, deadline, failure);
            }
            if (failure != null) throw failure;
        } catch (IOException e) {
            throw new KilnException("cannot close " + hostFile + ": " + e, e);
        }
    }

    @Override
    public void copyOut(String guestPath, Path hostFile) {
        copyOut(guestPath, hostFile, DEFAULT_COPY_TIMEOUT);
    }

    /**
     * Copies a guest file to the host within {@code timeout} for the whole copy. The bytes land in a
     * temporary file beside {@code hostFile}, renamed over it only when the copy is complete.
     */
    public void copyOut(String guestPath, Path hostFile, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        String what = " for " + guestPath;
        Path target = hostFile.toAbsolutePath();
        Path temp = target.resolveSibling("." + target.getFileName() + "."
                + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".part");
        boolean done = false;
        try (OutputStream out = Files.newOutputStream(temp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            long handle = openFile(guestPath, "rb", deadline);
            RuntimeException failure = null;
            try {
                ObjectNode args = JsonFramer.JSON.createObjectNode().put("handle", handle).put("count", READ_CHUNK);
                Base64.Decoder b64 = Base64.getDecoder();
                while (true) {
                    JsonNode ret = request("guest-file-read", args, deadline, what);
                    out.write(b64.decode(ret.path("buf-b64").asText("")));
                    if (ret.path("eof").asBoolean()) break;
                }
            } catch (IOException e) {
                failure = new KilnException("cannot write " + temp + " while copying " + guestPath + " out of " + name
                        + ": " + e, e);
            } catch (RuntimeException e) {
                failure = e;
            } finally {
                failure = closeFile(handle, guestPath, deadline, failure);
            }
            if (failure != null) throw failure;
            done = true;
        } catch (IOException e) {
            throw new KilnException("cannot write " + temp + " while copying " + guestPath + " out of " + name + ": " + e, e);
        } finally {
            if (!done) {
                try {
                    Files.deleteIfExists(temp);
                } catch (IOException ignored) {
                    // best effort; the original failure matters more
                }
            }
        }
        try {
            Files.move(temp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            try {
                Files.deleteIfExists(temp);
            } catch (IOException ignored) {
                // as above
            }
            throw new KilnException("cannot move " + temp + " to " + target + ": " + e, e);
        }
    }

    private long openFile(String guestPath, String mode, Deadline deadline) {
        ObjectNode args = JsonFramer.JSON.createObjectNode().put("path", guestPath).put("mode", mode);
        JsonNode handle = request("guest-file-open", args, deadline, " for " + guestPath);
        if (!handle.canConvertToLong()) {
            throw new GuestException("guest agent of " + name + " answered guest-file-open for " + guestPath
                    + " without a handle: " + handle);
        }
        return handle.asLong();
    }

    /** Closes a guest file handle, even after the copy's deadline passed; reports over an earlier failure. */
    private RuntimeException closeFile(long handle, String guestPath, Deadline deadline, RuntimeException failure) {
        Deadline closeBy = deadline.remainingNanos() > KILL_BUDGET.toNanos() ? deadline : Deadline.after(KILL_BUDGET);
        try {
            request("guest-file-close", JsonFramer.JSON.createObjectNode().put("handle", handle), closeBy,
                    " for " + guestPath);
            return failure;
        } catch (RuntimeException e) {
            if (failure == null) return e;
            failure.addSuppressed(e);
            return failure;
        }
    }

    // ---------------------------------------------------------------- shutdown and close

    /**
     * Sends {@code guest-shutdown} (powerdown). The agent answers only failures, so success is silence or
     * the connection closing within a short moment; an error reply is a {@link GuestException}.
     */
    @Override
    public void shutdown() {
        Deadline deadline = Deadline.after(DEFAULT_CALL_TIMEOUT);
        String command = "guest-shutdown";
        if (!tryLock(deadline)) throw busy(command, "", deadline);
        try {
            QgaChannel ch = usableChannel(command);
            if (!inStep || ch.hasUnread()) sync(ch, deadline, command);
            ObjectNode args = JsonFramer.JSON.createObjectNode().put("mode", "powerdown");
            send(ch, message(command, args), command, "", deadline);
            inStep = false; // a late error reply may still come; resync before anything else
            Deadline brief = Deadline.after(SHUTDOWN_REPLY_WAIT);
            Inbound in = next(ch, brief.remainingNanos(), command);
            if (in instanceof Reply(ObjectNode reply) && reply.has("error")) {
                throw agentError(command, "", reply.get("error"));
            }
            log.debug("guest agent of {} accepted guest-shutdown ({})", name, in == null ? "no reply" : in);
        } finally {
            lock.unlock();
        }
    }

    /** Closes the connection and stops its reader; requests then fail at once. Idempotent. */
    @Override
    public void close() {
        closed = true;
        QgaChannel ch = channel;
        if (ch != null) ch.close();
    }

    @Override
    public String toString() {
        QgaChannel ch = channel;
        return "QgaGuest[" + name + ", " + (closed ? "closed" : ch == null ? "not connected"
                : ch.closed() != null ? "connection closed: " + ch.closed().reason() : "connected") + "]";
    }

    // ---------------------------------------------------------------- the protocol

    private JsonNode request(String command, ObjectNode args, Deadline deadline, String what) {
        if (!tryLock(deadline)) throw busy(command, what, deadline);
        try {
            QgaChannel ch = usableChannel(command + what);
            if (!inStep || ch.hasUnread()) sync(ch, deadline, command + what);
            send(ch, message(command, args), command, what, deadline);
            Inbound in = next(ch, deadline.remainingNanos(), command + what);
            return switch (in) {
                case null -> {
                    inStep = false; // its reply will come later
                    throw timeout(command, what, deadline);
                }
                case Reply(ObjectNode reply) when reply.has("return") -> reply.get("return");
                case Reply(ObjectNode reply) when reply.has("error") -> throw agentError(command, what, reply.get("error"));
                case Reply(ObjectNode reply) -> {
                    inStep = false;
                    throw new GuestException("guest agent of " + name + " answered " + command + what
                            + " with neither return nor error: " + Text.tail(reply.toString(), 500));
                }
                case Garbage(var problem) -> {
                    inStep = false;
                    throw new GuestException("guest agent of " + name + " sent garbage in answer to " + command + what
                            + ": " + Text.tail(problem.getMessage(), 300)
                            + (problem.getCause() != null ? " (" + problem.getCause().getMessage() + ")" : ""), null, problem);
                }
                case Closed c -> throw closedException(c, "waiting for " + command + what);
            };
        } finally {
            lock.unlock();
        }
    }

    /**
     * Brings the stream into step: 0xFF (the agent's parser drops whatever partial input it holds and
     * answers the stray byte with an error) and {@code guest-sync-delimited} with a fresh id, resent with a
     * new id after each 200 ms of silence. Only the latest id counts, so once it arrives every earlier
     * reply has been read and discarded.
     */
    private void sync(QgaChannel ch, Deadline deadline, String before) {
        String what = before.isEmpty() ? "" : " before " + before;
        ch.discardUnread();
        long id = sendSync(ch, deadline);
        long resendAt = System.nanoTime() + SYNC_RESEND.toNanos();
        while (true) {
            long left = deadline.remainingNanos();
            if (left == 0) throw timeout("guest-sync-delimited", what, deadline);
            Inbound in = next(ch, Math.min(left, Math.max(0, resendAt - System.nanoTime())), "guest-sync-delimited");
            if (in == null) {
                if (deadline.expired()) throw timeout("guest-sync-delimited", what, deadline);
                id = sendSync(ch, deadline);
                resendAt = System.nanoTime() + SYNC_RESEND.toNanos();
            } else if (in instanceof Closed c) {
                throw closedException(c, "waiting for guest-sync-delimited" + what);
            } else if (in instanceof Reply(ObjectNode reply) && reply.path("return").isIntegralNumber()
                    && reply.get("return").asLong() == id) {
                inStep = true;
                return;
            } else {
                log.debug("guest agent of {}: discarding {} while resynchronising", name, in);
                resendAt = System.nanoTime() + SYNC_RESEND.toNanos();
            }
        }
    }

    private long sendSync(QgaChannel ch, Deadline deadline) {
        long id = ThreadLocalRandom.current().nextLong(1, 1L << 53);
        byte[] body = message("guest-sync-delimited", JsonFramer.JSON.createObjectNode().put("id", id));
        byte[] bytes = new byte[body.length + 1];
        bytes[0] = (byte) 0xFF;
        System.arraycopy(body, 0, bytes, 1, body.length);
        send(ch, bytes, "guest-sync-delimited", "", deadline);
        return id;
    }

    private void send(QgaChannel ch, byte[] bytes, String command, String what, Deadline deadline) {
        Duration limit = deadline.remaining().compareTo(WRITE_FLOOR) > 0 ? deadline.remaining() : WRITE_FLOOR;
        try {
            ch.send(bytes, limit);
        } catch (IOException e) {
            Closed c = ch.closed();
            if (c != null && c.writeTimedOut()) {
                throw new WaitTimeoutException("guest agent of " + name + " to take " + command
                        + what + " (" + c.reason() + ")", limit, consoleTail.get(), e);
            }
            throw closedException(c != null ? c : new Closed(e.getMessage(), e, false), "sending " + command + what);
        }
    }

    private Inbound next(QgaChannel ch, long nanos, String waitingFor) {
        try {
            return ch.next(nanos);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            inStep = false;
            throw new GuestException("interrupted while waiting for the guest agent of " + name + " to answer " + waitingFor,
                    null, e);
        }
    }

    private static byte[] message(String command, ObjectNode args) {
        ObjectNode msg = JsonFramer.JSON.createObjectNode().put("execute", command);
        if (args != null) msg.set("arguments", args);
        return JsonFramer.toBytes(msg);
    }

    /** The open channel, connecting once if there is none yet; a closed one fails at once. */
    private QgaChannel usableChannel(String forWhat) {
        ensureNotClosed();
        QgaChannel ch = channel;
        if (ch == null) {
            try {
                ch = connect();
            } catch (RuntimeException e) {
                throw new GuestException("cannot connect to the guest agent of " + name + " for " + forWhat + ": " + e,
                        null, e);
            }
        }
        Closed c = ch.closed();
        if (c != null) throw closedException(c, "before " + forWhat);
        return ch;
    }

    private QgaChannel connect() {
        QgaChannel old = channel;
        if (old != null) old.close();
        SocketChannel sc = Objects.requireNonNull(connector.get(), "the connector returned no channel");
        try {
            QgaChannel ch = new QgaChannel(sc, name);
            channel = ch;
            inStep = false;
            agentEnvironment = null;
            return ch;
        } catch (IOException e) {
            try {
                sc.close();
            } catch (IOException ignored) {
                // already failing
            }
            throw new GuestException("cannot set up the connection to the guest agent of " + name + ": " + e, null, e);
        }
    }

    private void ensureNotClosed() {
        if (closed) throw new GuestException("the guest agent client of " + name + " is closed");
    }

    private boolean tryLock(Deadline deadline) {
        try {
            return lock.tryLock(deadline.remainingNanos(), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GuestException("interrupted while waiting for the guest agent of " + name, null, e);
        }
    }

    private GuestException closedException(Closed c, String doing) {
        String tail = consoleTail.get();
        String vmm = vmmState.get();
        return new GuestException("the guest agent connection of " + name + " closed (" + c.reason() + ") " + doing
                + (vmm == null ? "" : ": " + vmm)
                + (tail == null || tail.isBlank() ? "" : "\n  console tail:\n    "
                        + Text.tail(tail, 2000).strip().replace("\n", "\n    ")), null, c.cause());
    }

    /** Nothing was sent: another call held the connection for the whole time. */
    private WaitTimeoutException busy(String command, String what, Deadline deadline) {
        return new WaitTimeoutException("the connection to the guest agent of " + name + " for " + command + what
                + " (another call held it all that time)", deadline.total(), consoleTail.get());
    }

    /** No reply at all to a request: the agent went silent (exited, wedged) or the whole guest is stuck. */
    private WaitTimeoutException timeout(String command, String what, Deadline deadline) {
        String vmm = vmmState.get();
        return new WaitTimeoutException("guest agent of " + name + " to answer " + command + what
                + "; it stopped answering (no reply at all): the agent may have exited or the guest may be hung"
                + (vmm == null ? "" : "; " + vmm), deadline.total(), consoleTail.get());
    }

    private GuestException agentError(String command, String what, JsonNode error) {
        String errorClass = error.path("class").asText("GenericError");
        String desc = error.path("desc").asText(error.toString());
        return new AgentError("guest agent of " + name + ": " + command + what + " failed: " + desc + " (" + errorClass
                + ")", errorClass, desc);
    }

    /** The agent answered with an error (rather than the connection failing). */
    private static final class AgentError extends GuestException {
        final String desc;

        AgentError(String message, String errorClass, String desc) {
            super(message, errorClass, null);
            this.desc = desc;
        }
    }

    private static byte[] bytes(JsonNode status, String field) {
        JsonNode data = status.get(field);
        return data == null || data.isNull() ? new byte[0] : Base64.getDecoder().decode(data.asText());
    }

    private static void strings(ArrayNode array, List<String> values) {
        values.forEach(array::add);
    }

    private static void pause(long nanos) {
        if (nanos <= 0) return;
        try {
            Thread.sleep(Duration.ofNanos(nanos));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GuestException("interrupted while waiting for the guest agent", null, e);
        }
    }
}
