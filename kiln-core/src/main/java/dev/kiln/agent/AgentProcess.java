package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.ExecRequest;
import dev.kiln.GuestException;
import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.agent.QgaSession.AgentError;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.OptionalInt;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A process run through the agent alone, where there are no exec ports (Firecracker) or all are busy. A shell of the
 * image's sends its stdout and stderr to files under /run; Kiln reads what they gained, with the exit status, on each
 * poll (at once, then backing off to every 100 ms), so output arrives while it runs, a poll late. Its stdin is the
 * request's bytes only; output that something it started writes after it exited is not read; the files take guest
 * memory (tmpfs) until the process is done, when they are removed.
 */
final class AgentProcess implements StreamingProcess {
    private static final Logger log = LoggerFactory.getLogger(AgentProcess.class);
    private static final Duration CALL = Duration.ofSeconds(30);
    private static final Duration KILL_BUDGET = Duration.ofSeconds(10);
    private static final long FIRST_POLL_NANOS = TimeUnit.MILLISECONDS.toNanos(1);
    private static final long MAX_POLL_NANOS = TimeUnit.MILLISECONDS.toNanos(100);
    private static final int CHUNK = 1 << 20;
    /** $1: its directory; $2: the directory to run in (or ""); then argv. Its own errors go to the stderr file too. */
    private static final String WRAPPER = """
            d=$1; w=$2; shift 2
            mkdir -p "$d" && : >"$d/out" && : >"$d/err" || exit 125
            exec 2>>"$d/err"
            [ -z "$w" ] || cd "$w" || exit 126
            command -v "$1" >/dev/null || { : >"$d/notfound"; exit 127; }
            exec "$@" >>"$d/out"
            """;

    private final QgaSession session;
    private final QgaExec exec;
    private final ExecRequest req;
    private final String dir;
    private final long pid;
    private final OutputSink out, err;
    private final InputStream stdout, stderr;
    private final CompletableFuture<Integer> done = new CompletableFuture<>();
    private volatile boolean notFound;
    private volatile boolean closed;

    AgentProcess(QgaSession session, QgaExec exec, ExecRequest req, OutputSink out, OutputSink err) {
        this.session = session;
        this.exec = exec;
        this.req = req;
        this.out = out;
        this.err = err;
        this.stdout = out instanceof InputStream in ? in : InputStream.nullInputStream();
        this.stderr = err instanceof InputStream in ? in : InputStream.nullInputStream();
        this.dir = "/run/kiln-exec/" + UUID.randomUUID();
        List<String> argv = new ArrayList<>(List.of("/bin/sh", "-c", WRAPPER, "sh", dir, req.workingDir() == null ? "" : req.workingDir()));
        argv.addAll(req.argv());
        ExecRequest wrapped = new ExecRequest(argv, req.stdin(), req.env(), null, req.timeout(), null, null);
        this.pid = exec.start(wrapped, false, Deadline.after(CALL));
        Thread.ofVirtual().name("kiln-exec-agent-" + pid).start(this::follow);
    }

    /** Polls the exit status and the files until it exited, handing what they gained to the sinks. */
    private void follow() {
        Stream o = new Stream(dir + "/out", out), e = new Stream(dir + "/err", err);
        String problem = null;
        try {
            long pause = FIRST_POLL_NANOS;
            while (true) {
                if (closed) throw new GuestException("stopped following " + req.argv() + ": its handle was closed");
                JsonNode status = session.request("guest-exec-status", JsonFramer.JSON.createObjectNode().put("pid", pid),
                        Deadline.after(CALL), " of " + req.argv());
                boolean grew = o.readNew() | e.readNew();
                if (status.path("exited").asBoolean()) {
                    while (o.readNew() | e.readNew()) {
                        // what it wrote just before it exited
                    }
                    int code = status.has("signal") ? 128 + status.path("signal").asInt() : status.path("exitcode").asInt(-1);
                    notFound = code == 127 && exists(dir + "/notfound");
                    o.close();
                    e.close();
                    removeDir(); // before it is done: nothing of it is left in the guest then
                    o.end(null);
                    e.end(null);
                    done.complete(code);
                    break;
                }
                pause = grew ? FIRST_POLL_NANOS : Math.min(pause * 2, MAX_POLL_NANOS);
                session.pause(pause);
            }
        } catch (RuntimeException ex) {
            problem = ex.getMessage();
            o.end(problem);
            e.end(problem);
            done.completeExceptionally(ex);
            o.close();
            e.close();
            removeDir();
        }
    }

    /** One output file: its agent handle and how far it was read. */
    private final class Stream {
        final String path;
        final OutputSink sink;
        Long handle;
        long offset;

        Stream(String path, OutputSink sink) {
            this.path = path;
            this.sink = sink;
        }

        /** Reads what the file gained since the last time; whether it had anything. */
        boolean readNew() {
            if (handle == null && (handle = open(path)) == null) return false; // not made yet
            // A seek first: the agent's stdio stream stays at end of file once it was there.
            session.request("guest-file-seek", JsonFramer.JSON.createObjectNode().put("handle", handle).put("offset", offset)
                    .put("whence", 0), Deadline.after(CALL), " in " + path);
            boolean any = false;
            while (true) {
                JsonNode r = session.request("guest-file-read", JsonFramer.JSON.createObjectNode().put("handle", handle)
                        .put("count", CHUNK), Deadline.after(CALL), " of " + path);
                byte[] bytes = Base64.getDecoder().decode(r.path("buf-b64").asText(""));
                if (bytes.length == 0) return any;
                offset += bytes.length;
                any = true;
                sink.accept(bytes, 0, bytes.length);
                if (bytes.length < CHUNK) return true;
            }
        }

        void end(String problem) {
            sink.end(problem);
        }

        void close() {
            if (handle == null) return;
            Long h = handle;
            handle = null;
            try {
                session.request("guest-file-close", JsonFramer.JSON.createObjectNode().put("handle", h), Deadline.after(CALL),
                        " for " + path);
            } catch (KilnException e) {
                log.debug("cannot close {}: {}", path, e.toString());
            }
        }
    }

    private Long open(String path) {
        try {
            return session.request("guest-file-open", JsonFramer.JSON.createObjectNode().put("path", path).put("mode", "r"),
                    Deadline.after(CALL), " for " + path).asLong();
        } catch (AgentError e) {
            return null;
        }
    }

    private boolean exists(String path) {
        Long h = open(path);
        if (h == null) return false;
        session.request("guest-file-close", JsonFramer.JSON.createObjectNode().put("handle", h), Deadline.after(CALL), " for " + path);
        return true;
    }

    private void removeDir() {
        try {
            ObjectNode args = JsonFramer.JSON.createObjectNode().put("path", "/bin/rm");
            args.putArray("arg").add("-rf").add(dir);
            long rm = session.request("guest-exec", args, Deadline.after(CALL), " to remove " + dir).path("pid").asLong();
            exec.awaitExit(rm, Deadline.after(CALL), " of rm -rf " + dir);
        } catch (KilnException e) {
            log.debug("cannot remove {}: {}", dir, e.toString());
        }
    }

    @Override
    public boolean wasNotFound() { return notFound; }

    @Override
    public GuestException notFoundError() {
        return new GuestException("cannot run " + req.argv() + " in " + session.name() + ": '" + req.argv().getFirst()
                + "' is not a command there (not found, or not executable)");
    }

    /** The exit code once it exited and its output was read; null at the deadline. */
    @Override
    public Integer awaitDone(Deadline deadline) {
        return Futures.await(done, deadline, req.argv().toString());
    }

    @Override public long pid() { return pid; }

    @Override public List<String> argv() { return req.argv(); }

    @Override public InputStream stdout() { return stdout; }

    @Override public InputStream stderr() { return stderr; }

    @Override
    public OutputStream stdin() {
        return new OutputStream() {
            @Override
            public void write(int b) throws IOException {
                throw new IOException("the stdin of " + req.argv() + " cannot be streamed through the guest agent alone "
                        + "(this machine has no exec ports, or all are busy): give the request its stdin bytes");
            }
        };
    }

    @Override public boolean isAlive() { return !done.isDone(); }

    @Override
    public OptionalInt exitCode() {
        Integer code = done.isCompletedExceptionally() ? null : done.getNow(null);
        return code == null ? OptionalInt.empty() : OptionalInt.of(code);
    }

    @Override
    public int waitFor(Duration timeout) {
        Integer code = awaitDone(Deadline.after(timeout));
        if (code == null) throw new WaitTimeoutException("process " + pid + " " + req.argv() + " to exit", timeout, "");
        if (notFound) throw notFoundError();
        return code;
    }

    @Override
    public void signal(int signal) {
        if (!done.isDone()) exec.signal(pid, signal, Deadline.after(KILL_BUDGET));
    }

    @Override
    public void kill() {
        if (!done.isDone()) exec.killTree(pid, List.of(), Deadline.after(KILL_BUDGET));
    }

    @Override
    public void close() {
        if (stdout instanceof OutputSink.Pipe p) p.discard();
        if (stderr instanceof OutputSink.Pipe p) p.discard();
        if (done.isDone()) return;
        try {
            kill();
            awaitDone(Deadline.after(KILL_BUDGET));
        } catch (MachineClosedException e) {
            // gone with the machine
        } finally {
            closed = true;
        }
    }
}
