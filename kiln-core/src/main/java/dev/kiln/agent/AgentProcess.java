package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.GuestProcess;
import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.time.Duration;
import java.util.List;
import java.util.OptionalInt;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * A process started through the agent alone, where there are no exec ports (Firecracker) or all are busy: the agent
 * hands out its output only once it exited, so its streams and callbacks get everything then; its stdin is the
 * request's bytes only.
 */
final class AgentProcess implements GuestProcess {
    private static final Duration KILL_BUDGET = Duration.ofSeconds(10);
    private static final long MAX_POLL_NANOS = TimeUnit.MILLISECONDS.toNanos(200);
    private static final Duration FOREVER = Duration.ofDays(365);

    private final QgaExec exec;
    private final ExecRequest req;
    private final long pid;
    private final CompletableFuture<ExecResult> result = new CompletableFuture<>();
    private final InputStream stdout, stderr;
    private volatile boolean closed;

    AgentProcess(QgaExec exec, ExecRequest req) {
        this.exec = exec;
        this.req = req;
        long start = System.nanoTime();
        this.pid = exec.start(req, Deadline.after(QgaGuest.DEFAULT_CALL_TIMEOUT));
        this.stdout = new AtExit(true);
        this.stderr = new AtExit(false);
        Thread.ofVirtual().name("kiln-exec-wait-" + pid).start(() -> {
            try {
                JsonNode status = null;
                while (status == null && !closed) status = exec.awaitExit(pid, Deadline.after(FOREVER), " of " + req.argv(), MAX_POLL_NANOS);
                if (status == null) throw new GuestException("stopped waiting for " + req.argv() + ": its handle was closed");
                ExecResult r = exec.result(req, status, Duration.ofNanos(System.nanoTime() - start));
                if (req.onStdout() != null && r.stdout().length > 0) req.onStdout().accept(r.stdout());
                if (req.onStderr() != null && r.stderr().length > 0) req.onStderr().accept(r.stderr());
                result.complete(r);
            } catch (RuntimeException e) {
                result.completeExceptionally(e);
            }
        });
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

    @Override public boolean isAlive() { return !result.isDone(); }

    @Override
    public OptionalInt exitCode() {
        ExecResult r = result.isCompletedExceptionally() ? null : result.getNow(null);
        return r == null ? OptionalInt.empty() : OptionalInt.of(r.exitCode());
    }

    @Override
    public int waitFor(Duration timeout) {
        ExecResult r = await(Deadline.after(timeout));
        if (r == null) throw new WaitTimeoutException("process " + pid + " " + req.argv() + " to exit", timeout, "");
        return r.exitCode();
    }

    private ExecResult await(Deadline deadline) {
        return Futures.await(result, deadline, req.argv().toString());
    }

    @Override
    public void signal(int signal) {
        if (!result.isDone()) exec.signal(pid, signal, Deadline.after(KILL_BUDGET));
    }

    @Override
    public void kill() {
        if (!result.isDone()) exec.killTree(pid, List.of(), Deadline.after(KILL_BUDGET));
    }

    @Override
    public void close() {
        if (!result.isDone()) {
            try {
                kill();
                await(Deadline.after(KILL_BUDGET));
            } catch (MachineClosedException e) {
                // gone with the machine
            } catch (KilnException e) {
                closed = true;
                throw e;
            }
        }
        closed = true;
    }

    /** A stream that has nothing until the process exited, then everything. */
    private final class AtExit extends InputStream {
        private final boolean out;
        private InputStream bytes;

        AtExit(boolean out) {
            this.out = out;
        }

        private InputStream bytes() throws IOException {
            if (bytes != null) return bytes;
            try {
                ExecResult r = result.get();
                bytes = new ByteArrayInputStream(out ? (req.onStdout() != null ? new byte[0] : r.stdout())
                        : (req.onStderr() != null ? new byte[0] : r.stderr()));
                return bytes;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while waiting for " + req.argv());
            } catch (ExecutionException e) {
                throw new IOException(e.getCause().getMessage(), e.getCause());
            }
        }

        @Override
        public int read() throws IOException { return bytes().read(); }

        @Override
        public int read(byte[] b, int off, int len) throws IOException { return bytes().read(b, off, len); }
    }
}
