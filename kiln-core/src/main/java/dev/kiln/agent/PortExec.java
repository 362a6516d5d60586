package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.ExecRequest;
import dev.kiln.GuestException;
import dev.kiln.KilnException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.agent.ExecPorts.Role;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Pattern;

import static dev.kiln.support.ShellWords.quote;

/**
 * Runs guest commands over {@link ExecPorts}: each slot has a shell in the guest, started once through the agent,
 * that reads commands from the slot's control port and runs one at a time with its stdin, stdout and stderr on the
 * slot's other ports, reporting the pid and the exit status back on the control port. Output streams while the command
 * runs, with the ports' own flow control as back-pressure, and a command costs the guest one fork and exec: the shell
 * is already running.
 *
 * <p>Only the image's own {@code sh} is used (busybox ash, dash): builtins, no tool of Kiln's.
 */
final class PortExec {
    private static final Logger log = LoggerFactory.getLogger(PortExec.class);
    private static final Duration SERVER_START = Duration.ofSeconds(20);
    private static final Duration PROBE_LIMIT = Duration.ofSeconds(10);
    private static final Duration REPORT_GRACE = Duration.ofMillis(200);
    private static final Pattern ENV_NAME = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");

    /**
     * The slot's shell. $1..$4 name its control, stdin, stdout and stderr ports; it finds their devices, takes the
     * control port as its stdin, stdout and fd 9, says "k PID", then reads commands: a line with a count of lines,
     * then that many lines of shell code, which it runs. (The guest closing a port is an event of QEMU's too, but one
     * QEMU sends at most once a second per port: the shell's own report is what ends a stream.)
     */
    private static final String SERVER = """
            # The ports and their names come some time after the device (just after a boot or a reset): wait up to 5 s.
            t=0
            while :; do
              for f in /sys/class/virtio-ports/*/name; do
                read -r v < "$f" || continue
                p=${f%/name}; p=/dev/${p##*/}
                case $v in "$1") c=$p ;; "$2") i=$p ;; "$3") o=$p ;; "$4") e=$p ;; esac
              done
              [ -c "$c" ] && [ -c "$i" ] && [ -c "$o" ] && [ -c "$e" ] && break
              t=$((t + 1)); [ "$t" -le 100 ] || exit 3
              sleep 0.05
            done
            exec <>"$c" >&0 9>&0 2>/dev/null
            # x STATUS: reports the exit status and whether the stdout, stderr and stdin ports are free now (0) or still
            # held by something the command started (a port has one holder at a time: opening it fails while held).
            x() { st=$1; true >"$o"; a=$?; true >"$e"; b=$?; true <"$i"; echo "x $st $a $b $?"; }
            # r STDIN ARGV...: runs ARGV (after a check that it is a command) with the slot's stdout and stderr
            r() { f=$1; shift; ( command -v "$1" >/dev/null || { echo n >&9; exit 127; }; exec "$@" 9>&- ) <"$f" >"$o" 2>"$e"; x $?; }
            echo "k $$"
            while read -r n; do
              s=
              while [ "$n" -gt 0 ] && IFS= read -r l; do s="$s$l
            "; n=$((n - 1)); done
              eval "$s"
            done
            """;

    private final QgaSession session;
    private final QgaExec agentExec;
    private final ExecPorts ports;
    private final String name;
    private final Slot[] slots;
    private volatile String closedReason;
    private volatile boolean vmmGone;

    PortExec(QgaSession session, QgaExec agentExec, ExecPorts ports) {
        this.session = session;
        this.agentExec = agentExec;
        this.ports = ports;
        this.name = session.name();
        this.slots = new Slot[ports.slots()];
        for (int i = 0; i < slots.length; i++) slots[i] = new Slot(i);
    }

    /** Starts the request in a free slot, or returns null when every slot is busy (or broken). */
    PortProcess start(ExecRequest req, boolean handle, boolean stdinOpen, OutputSink out, OutputSink err, Deadline deadline) {
        for (String k : req.env().keySet()) {
            if (!ENV_NAME.matcher(k).matches()) {
                throw new IllegalArgumentException("env: '" + k + "' is not a variable name the guest's shell can set");
            }
        }
        boolean withStdin = stdinOpen || req.stdin() != null;
        for (Slot s : slots) {
            if (s.tryTake(withStdin)) return s.run(req, handle, withStdin, stdinOpen, out, err, deadline);
        }
        return null;
    }

    /** Kills pid's tree and whatever holds the slot's stdin, stdout or stderr port (an orphan it left). */
    void killTree(PortProcess p, Deadline deadline) {
        Slot s = slots[p.slot()];
        // Its pid once it reported one and until it exited (then the pid may be another's); else the slot shell's children.
        String target = p.isAlive() && p.pid() > 0 ? Long.toString(p.pid()) : s.serverPid > 0 ? "+" + s.serverPid : "-";
        agentExec.killTree(target, List.of(ports.name(s.index, Role.STDIN), ports.name(s.index, Role.STDOUT),
                ports.name(s.index, Role.STDERR)), deadline);
    }

    void signal(long pid, int signal, Deadline deadline) {
        agentExec.signal(pid, signal, deadline);
    }

    void retire(PortProcess p, String why) {
        slots[p.slot()].retire(why);
    }

    /** Any slot is in use (a process runs). */
    int busySlots() {
        int n = 0;
        for (Slot s : slots) if (s.busy()) n++;
        return n;
    }

    /** The slots whose guest shell runs, idle: a saved guest has them too. */
    List<Integer> idleShells() {
        List<Integer> up = new ArrayList<>();
        for (Slot s : slots) if (s.idleShell()) up.add(s.index);
        return up;
    }

    /** Starts the first slot's guest shell if it does not run, so that a guest saved now has one ready. */
    void warmShell(Deadline deadline) {
        Slot s = slots[0];
        if (!s.tryTake(false)) return;
        try {
            s.ensureServer(deadline);
        } finally {
            s.free();
        }
    }

    /**
     * Takes over the guest shells of a restored guest: those slots' shells ran, idle, when it was saved (their control
     * ports were connected again before its state was loaded, so they read on).
     */
    void adoptShells(List<Integer> indices) {
        for (Slot s : slots) {
            if (indices.contains(s.index)) s.adopt();
            else s.maybeStale = true; // a shell the saved guest ran unlisted (it was saved paused) is ended first
        }
    }

    /** Ends the slots' shells (they exit at the end of their input) and stops reading; running processes fail. */
    void close(String reason) {
        closedReason = reason;
        for (Slot s : slots) s.close(reason);
    }

    String name() { return name; }

    /** One slot: its ports' host ends, its shell, and the process it runs. */
    final class Slot {
        private final int index;
        private SocketChannel control;   // under this
        private SocketChannel stdin;     // under this
        private PortReader stdout, stderr;
        private boolean taken;           // under this
        private boolean serverUp;        // under this
        private CompletableFuture<Long> serverReady;
        private volatile PortProcess current;
        private volatile String broken;
        private volatile long serverPid = -1;
        /** A shell may run in the slot that Kiln does not know of (a failed start, a restore): end it before starting one. */
        private volatile boolean maybeStale;
        /** Something a command left running holds the stdin port: commands with stdin use other slots meanwhile. */
        private volatile boolean stdinHeld;

        Slot(int index) {
            this.index = index;
        }

        synchronized boolean tryTake(boolean withStdin) {
            if (taken || broken != null || closedReason != null || withStdin && stdinHeld) return false;
            taken = true;
            return true;
        }

        synchronized void free() {
            taken = false;
            current = null;
        }

        synchronized boolean busy() {
            return taken;
        }

        /** Runs the request; a handle's process reports its pid first, and this returns once it did. */
        PortProcess run(ExecRequest req, boolean handle, boolean withStdin, boolean stdinOpen, OutputSink out, OutputSink err,
                        Deadline deadline) {
            try {
                ensureServer(deadline);
            } catch (RuntimeException e) {
                free();
                throw e;
            }
            PortProcess p = new PortProcess(PortExec.this, index, req.argv(), withStdin ? stdinChannel() : null);
            int[] ended = {0};
            Runnable streamEnded = () -> {
                synchronized (ended) {
                    if (++ended[0] == 2) p.streamsEnded();
                }
            };
            stdout.expect(out, streamEnded);
            stderr.expect(err, streamEnded);
            current = p;
            try {
                send(code(req, withStdin, handle), deadline, req.argv());
            } catch (RuntimeException e) {
                free();
                throw e;
            }
            // Sent: the slot is this process's until it is done, whatever happens to this call.
            p.onDone(() -> release(p));
            if (handle) p.awaitStarted(deadline);
            if (req.stdin() != null) {
                // On a thread of its own: bytes past the connection's buffer wait for the command to read them, and one
                // that never does (it exited) must not hold up its caller.
                Thread.ofVirtual().name("kiln-exec-stdin-" + name).start(() -> {
                    try {
                        p.writeStdin(req.stdin());
                    } catch (RuntimeException e) {
                        if (p.isAlive()) log.debug("{}: stdin of {}: {}", name, req.argv(), e.toString());
                    }
                    if (!stdinOpen) p.closeStdin();
                });
            }
            return p;
        }

        /**
         * The shell code that runs argv with the slot's ports: a subshell (the one fork) goes to the directory, sets the
         * environment, checks the command exists ("n" if not), for a handle says "p PID", and execs it; the slot's shell
         * waits for it and says "x STATUS OUT ERR IN" (whether its ports are free now). A plain command takes
         * the short way, the server's function {@code r}.
         */
        private String code(ExecRequest req, boolean withStdin, boolean reportPid) {
            String stdin = withStdin ? "\"$i\"" : "/dev/null";
            if (!reportPid && req.workingDir() == null && req.env().isEmpty()) {
                StringBuilder c = new StringBuilder("r ").append(stdin); // the short way: fewer bytes for the shell to read
                for (String a : req.argv()) c.append(' ').append(quote(a));
                return c.toString();
            }
            StringBuilder c = new StringBuilder("( ");
            if (reportPid) c.append("read -r p _ </proc/self/stat; ");
            if (req.workingDir() != null) c.append("cd ").append(quote(req.workingDir())).append(" || exit 126; ");
            for (Map.Entry<String, String> e : req.env().entrySet()) {
                c.append("export ").append(e.getKey()).append('=').append(quote(e.getValue())).append("; ");
            }
            String cmd = quote(req.argv().getFirst());
            c.append("command -v ").append(cmd).append(" >/dev/null || { echo n >&9; exit 127; }; ");
            if (reportPid) c.append("echo \"p $p\" >&9; ");
            c.append("exec");
            for (String a : req.argv()) c.append(' ').append(quote(a));
            c.append(" 9>&- ) <").append(stdin).append(" >\"$o\" 2>\"$e\"; x $?");
            return c.toString();
        }

        private void send(String code, Deadline deadline, List<String> argv) {
            long lines = code.chars().filter(ch -> ch == '\n').count() + 1;
            byte[] bytes = (lines + "\n" + code + "\n").getBytes(StandardCharsets.UTF_8);
            try {
                SocketChannel ch;
                synchronized (this) {
                    ch = control;
                }
                ByteBuffer b = ByteBuffer.wrap(bytes);
                while (b.hasRemaining()) ch.write(b);
            } catch (IOException e) {
                throw new GuestException("cannot send " + argv + " to the guest shell of exec slot " + index + " in " + name
                        + ": " + e.getMessage(), null, e);
            }
        }

        private synchronized SocketChannel stdinChannel() {
            return stdin;
        }

        /** The process is done (exited, streams ended): the slot takes the next one. */
        private void release(PortProcess p) {
            synchronized (this) {
                if (current != p) return;
                if (p.usedStdin()) {
                    // A fresh connection drops what the process left unread; the guest sees the host end open again.
                    closeQuietly(stdin);
                    try {
                        stdin = ports.connect(index, Role.STDIN);
                    } catch (IOException e) {
                        broken = "cannot reconnect its stdin port: " + e.getMessage();
                    }
                }
                current = null;
                taken = false;
            }
        }

        /** The process could not be ended: its ports may be held for good, so the slot takes no more. */
        void retire(String why) {
            broken = why;
            log.warn("{}: exec slot {} is out of use: {}", name, index, why);
        }

        private void ensureServer(Deadline deadline) {
            CompletableFuture<Long> ready;
            synchronized (this) {
                if (broken != null) throw new GuestException("exec slot " + index + " of " + name + " is out of use: " + broken);
                if (serverUp) return;
                if (control == null) connect();
                ready = serverReady = new CompletableFuture<>();
            }
            ObjectNode args = JsonFramer.JSON.createObjectNode().put("path", "/bin/sh");
            var arg = args.putArray("arg").add("-c").add(SERVER).add("sh");
            for (Role r : Role.values()) arg.add(ports.name(index, r));
            Deadline by = Deadline.after(deadline.remaining().compareTo(SERVER_START) < 0 ? deadline.remaining() : SERVER_START);
            String what = " to start the guest shell of exec slot " + index;
            // Until the new shell reports, whatever happens, one may be left running: the next start ends it first.
            boolean stale = maybeStale;
            maybeStale = true;
            if (stale) agentExec.killTree("-", List.of(ports.name(index, Role.CONTROL)), by);
            long pid = session.request("guest-exec", args, by, what).path("pid").asLong();
            try {
                ready.get(Math.max(1, by.remainingNanos()), TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) {
                JsonNode status = null;
                try {
                    status = session.request("guest-exec-status", JsonFramer.JSON.createObjectNode().put("pid", pid),
                            Deadline.after(Duration.ofSeconds(5)), what);
                } catch (KilnException ignored) {
                    // the timeout says it
                }
                if (status != null && status.path("exited").asBoolean()) {
                    int code = status.path("exitcode").asInt(-1);
                    throw new GuestException("the guest shell of exec slot " + index + " in " + name + " exited " + code
                            + (code == 3 ? ": the guest has no virtio-serial ports named " + names() : ""));
                }
                throw new WaitTimeoutException("the guest shell of exec slot " + index + " in " + name + " to report on its "
                        + "control port (pid " + pid + ")", by.total(), session.consoleTail());
            } catch (ExecutionException e) {
                throw new GuestException("the guest shell of exec slot " + index + " in " + name + " failed to start: "
                        + e.getCause().getMessage(), null, e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new GuestException("interrupted while starting the guest shell of exec slot " + index, null, e);
            }
            synchronized (this) {
                serverUp = true;
                maybeStale = false;
            }
        }

        private String names() {
            List<String> n = new ArrayList<>();
            for (Role r : Role.values()) n.add(ports.name(index, r));
            return n.toString();
        }

        /** Connects the slot's ports, once (they stay connected: the VMM drops what the guest writes to a port with no host end). */
        private void connect() {
            try {
                stdin = ports.connect(index, Role.STDIN);
                stdout = new PortReader(ports, index, Role.STDOUT, name + "-" + index + "-out");
                stderr = new PortReader(ports, index, Role.STDERR, name + "-" + index + "-err");
                ports.onGuestClose(index, Role.CONTROL, this::serverGone);
                ports.onGuestClose(index, Role.STDOUT, () -> closedEarly(Role.STDOUT));
                ports.onGuestClose(index, Role.STDERR, () -> closedEarly(Role.STDERR));
                control = ports.connect(index, Role.CONTROL);
            } catch (IOException e) {
                broken = "cannot connect its ports: " + e.getMessage(); // QEMU's connections are taken once: no second try
                closeQuietly(stdin);
                closeQuietly(control);
                if (stdout != null) stdout.stop();
                if (stderr != null) stderr.stop();
                throw new GuestException("cannot connect the exec ports of slot " + index + " in " + name + ": " + e.getMessage(), null, e);
            }
            SocketChannel ch = control;
            Thread.ofVirtual().name("kiln-exec-" + name + "-" + index + "-control").start(() -> readControl(ch));
        }

        synchronized boolean idleShell() {
            return serverUp && !taken && broken == null;
        }

        synchronized void adopt() {
            if (control == null) connect();
            serverUp = true;
        }

        private void readControl(SocketChannel ch) {
            StringBuilder line = new StringBuilder();
            ByteBuffer buf = ByteBuffer.allocate(512);
            try {
                while (ch.read(buf) >= 0) {
                    buf.flip();
                    while (buf.hasRemaining()) {
                        char c = (char) (buf.get() & 0xff);
                        if (c != '\n') {
                            if (line.length() < 200) line.append(c);
                            continue;
                        }
                        report(line.toString());
                        line.setLength(0);
                    }
                    buf.clear();
                }
            } catch (IOException e) {
                log.debug("{}: control port of exec slot {}: {}", name, index, e.toString());
            }
            // The VMM closes its end only as it exits: the machine is gone, not just the guest shell.
            vmmGone = true;
            serverGone();
        }

        private void report(String line) {
            CompletableFuture<Long> ready = serverReady;
            PortProcess p = current;
            String[] w = line.split(" ");
            try {
                switch (w[0]) {
                    case "k" -> {
                        serverPid = Long.parseLong(w[1]);
                        if (ready != null) ready.complete(serverPid);
                    }
                    case "p" -> { if (p != null) p.started(Long.parseLong(w[1])); }
                    case "n" -> { if (p != null) p.notFound(); }
                    case "x" -> {
                        if (p == null) break;
                        stdinHeld = w.length > 4 && !"0".equals(w[4]);
                        // The ends first: once it exited and its streams ended, the slot may take the next process.
                        if ("0".equals(w[2])) stdout.requestEnd(stdout.current());
                        if ("0".equals(w[3])) stderr.requestEnd(stderr.current());
                        p.exited(Integer.parseInt(w[1]));
                    }
                    default -> log.debug("{}: exec slot {} said '{}'", name, index, line);
                }
            } catch (RuntimeException e) {
                log.debug("{}: exec slot {} said '{}': {}", name, index, line, e.toString());
            }
        }

        /**
         * The guest closed the port (QEMU's event, which may come late or stand for an earlier close): when the running
         * process's stream is not over yet, ask the guest whether the port is free, and end the stream if it is. This
         * ends the stream of a process that closed it and runs on, or whose orphan held it past its exit.
         */
        private void closedEarly(Role role) {
            PortProcess p = current;
            PortReader reader = role == Role.STDOUT ? stdout : stderr;
            OutputSink sink = reader.current();
            if (p == null || sink == null) return;
            Thread.ofVirtual().name("kiln-exec-probe-" + name).start(() -> {
                try {
                    // Most closes are the process exiting: its shell's report ends the stream then, with no probe.
                    boolean exited = p.exitedWithin(REPORT_GRACE);
                    // Only a process known to hold its ports (a handle's reported its pid once it had them open) or one
                    // that exited: a late event of the slot's previous process must not end a stream not yet opened.
                    if (!exited && p.pid() < 0) return;
                    if (!reader.endingOrEnded(sink) && agentExec.portFree(ports.name(index, role), Deadline.after(PROBE_LIMIT))) {
                        reader.requestEnd(sink);
                    }
                } catch (RuntimeException e) {
                    log.debug("{}: cannot ask whether port {} is free: {}", name, ports.name(index, role), e.toString());
                }
            });
        }

        /** The guest shell closed its control port: it exited (or the guest reset). */
        private void serverGone() {
            CompletableFuture<Long> ready;
            PortProcess p;
            synchronized (this) {
                serverUp = false;
                ready = serverReady;
                p = current;
            }
            if (ready != null) ready.completeExceptionally(new GuestException("it closed its control port"));
            maybeStale = true;
            if (stdout != null) stdout.abandon("the guest shell of exec slot " + index + " ended");
            if (stderr != null) stderr.abandon("the guest shell of exec slot " + index + " ended");
            if (p != null) {
                boolean machineGone = closedReason != null || vmmGone;
                String state = machineGone ? session.vmmState() : null; // the VMM's end and a kernel panic, when seen
                String why = !machineGone ? "the guest shell running it ended"
                        : closedReason == null ? (state != null ? state : "the VMM closed the exec ports")
                        : closedReason + (state != null && !closedReason.contains(state) ? "; " + state : "");
                p.serverGone(machineGone, why);
            }
        }

        void close(String reason) {
            PortReader out, err;
            synchronized (this) {
                closeQuietly(control);
                closeQuietly(stdin);
                out = stdout;
                err = stderr;
            }
            if (out != null) out.stop();
            if (err != null) err.stop();
            serverGone();
        }
    }

    private static void closeQuietly(SocketChannel ch) {
        if (ch == null) return;
        try {
            ch.close();
        } catch (IOException ignored) {
            // closing anyway
        }
    }
}
