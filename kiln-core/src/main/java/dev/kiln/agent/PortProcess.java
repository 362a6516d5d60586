package dev.kiln.agent;

import dev.kiln.GuestException;
import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.List;
import java.util.OptionalInt;
import java.util.concurrent.CompletableFuture;

/** A process run by a slot of {@link PortExec}: reported by the slot's shell, streamed over the slot's ports. */
final class PortProcess implements StreamingProcess {
    private static final Duration KILL_BUDGET = Duration.ofSeconds(10);

    private final PortExec exec;
    private final int slot;
    private final List<String> argv;
    private final SocketChannel stdinChannel; // the slot's connection while this process has it
    private final CompletableFuture<Long> pid = new CompletableFuture<>();
    private final CompletableFuture<Integer> exit = new CompletableFuture<>();
    private final CompletableFuture<Void> streams = new CompletableFuture<>();
    private final CompletableFuture<Integer> done = exit.thenCombine(streams, (status, ended) -> status);
    private volatile boolean notFound;
    private volatile boolean stdinClosed;
    private volatile InputStream stdout = InputStream.nullInputStream(), stderr = InputStream.nullInputStream();
    private final OutputStream stdin = new OutputStream() {
        @Override
        public void write(int b) throws IOException {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            SocketChannel ch = openStdin();
            ByteBuffer buf = ByteBuffer.wrap(b, off, len);
            try {
                while (buf.hasRemaining()) ch.write(buf);
            } catch (IOException e) {
                throw new IOException("cannot write to the stdin of " + argv + ": " + e.getMessage(), e);
            }
        }

        @Override
        public void close() {
            closeStdin();
        }
    };

    PortProcess(PortExec exec, int slot, List<String> argv, SocketChannel stdinChannel) {
        this.exec = exec;
        this.slot = slot;
        this.argv = List.copyOf(argv);
        this.stdinChannel = stdinChannel;
    }

    int slot() { return slot; }

    boolean usedStdin() { return stdinChannel != null; }

    void streams(InputStream out, InputStream err) {
        this.stdout = out;
        this.stderr = err;
    }

    // ---- reports from the slot

    void started(long pid) { this.pid.complete(pid); }

    void notFound() { notFound = true; }

    void exited(int status) {
        pid.complete(-1L); // it ended before its exec
        exit.complete(status);
    }

    void streamsEnded() { streams.complete(null); }

    /** Waits at most {@code wait} for the exit report; whether it came. */
    boolean exitedWithin(Duration wait) {
        try {
            return Futures.await(exit, Deadline.after(wait), argv.toString()) != null;
        } catch (RuntimeException e) {
            return true; // its shell is gone: it is over for Kiln
        }
    }

    void serverGone(boolean machineGone, String reason) {
        String message = "lost track of " + argv + " in " + exec.name() + ": " + reason;
        RuntimeException e = machineGone ? new MachineClosedException(message, null) : new GuestException(message);
        pid.completeExceptionally(e);
        if (exit.completeExceptionally(e)) streams.complete(null);
    }

    void onDone(Runnable action) {
        done.whenComplete((v, e) -> action.run());
    }

    /** Waits for the shell's report that the process started; fails when it could not even be started. */
    void awaitStarted(Deadline deadline) {
        long p = get(pid, deadline, "the guest shell to start " + argv);
        if (p < 0 && notFound) throw notFoundError(); // else it ended before its exec (a directory it cannot enter)
    }

    @Override
    public boolean wasNotFound() { return notFound; }

    @Override
    public GuestException notFoundError() {
        return new GuestException("cannot run " + argv + " in " + exec.name() + ": '" + argv.getFirst()
                + "' is not a command there (not found, or not executable)");
    }

    void writeStdin(byte[] bytes) {
        try {
            stdin.write(bytes);
        } catch (IOException e) {
            throw new GuestException(e.getMessage(), null, e);
        }
    }

    private SocketChannel openStdin() throws IOException {
        if (stdinChannel == null) throw new IOException(argv + " was started without stdin");
        if (stdinClosed) throw new IOException("the stdin of " + argv + " is closed");
        if (exit.isDone()) throw new IOException(argv + " has exited");
        return stdinChannel;
    }

    void closeStdin() {
        if (stdinChannel == null || stdinClosed) return;
        stdinClosed = true;
        try {
            stdinChannel.shutdownOutput(); // end of file for the guest; the slot reconnects for the next process
        } catch (IOException ignored) {
            // the process ended, or the machine closed
        }
    }

    @Override
    public Integer awaitDone(Deadline deadline) {
        return Futures.await(done, deadline, argv.toString());
    }

    // ---- GuestProcess

    @Override
    public long pid() { return pid.getNow(-1L); }

    @Override
    public List<String> argv() { return argv; }

    @Override
    public InputStream stdout() { return stdout; }

    @Override
    public InputStream stderr() { return stderr; }

    @Override
    public OutputStream stdin() { return stdin; }

    @Override
    public boolean isAlive() { return !exit.isDone(); }

    @Override
    public OptionalInt exitCode() {
        Integer s = exit.isCompletedExceptionally() ? null : exit.getNow(null);
        return s == null ? OptionalInt.empty() : OptionalInt.of(s);
    }

    @Override
    public int waitFor(Duration timeout) {
        Integer status = awaitDone(Deadline.after(timeout));
        if (status == null) {
            throw new WaitTimeoutException("process " + pid() + " " + argv + " in " + exec.name() + " to "
                    + (exit.isDone() ? "close its stdout and stderr (it exited " + exit.getNow(null)
                    + "; something it started holds them)" : "exit"), timeout, "");
        }
        return status;
    }

    @Override
    public void signal(int signal) {
        if (exit.isDone()) return;
        exec.signal(pid(), signal, Deadline.after(KILL_BUDGET));
    }

    @Override
    public void kill() {
        if (done.isDone()) return;
        exec.killTree(this, Deadline.after(KILL_BUDGET));
    }

    @Override
    public void close() {
        closeStdin();
        if (stdout instanceof OutputSink.Pipe p) p.discard();
        if (stderr instanceof OutputSink.Pipe p) p.discard();
        if (done.isDone()) return;
        try {
            kill();
            if (awaitDone(Deadline.after(KILL_BUDGET)) == null) {
                exec.retire(this, "process " + pid() + " " + argv + " or what it started still holds its ports after a kill");
            }
        } catch (MachineClosedException e) {
            // the machine went, and the process with it
        } catch (KilnException e) {
            if (!done.isCompletedExceptionally()) throw e; // else its shell is gone: there is nothing left to close
        }
    }

    private static <T> T get(CompletableFuture<T> f, Deadline deadline, String what) {
        T value = Futures.await(f, deadline, what);
        if (value == null) throw new WaitTimeoutException(what, deadline.total(), "");
        return value;
    }
}
