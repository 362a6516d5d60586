package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.MachineClosedException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.JsonFramer;
import dev.kiln.support.ProtocolException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** QgaGuest against the real qemu-guest-agent, run on the host over a unix socket (no VM needed). */
@Timeout(60)
class QgaGuestTest {
    private static final Duration READY = Duration.ofSeconds(10);

    @TempDir
    Path tmp;

    private HostQemuGa agent;
    private QgaGuest guest;

    @BeforeEach
    void requireAgent() {
        assumeTrue(HostQemuGa.installed(), "qemu-ga not installed: " + HostQemuGa.BINARY
                + " is missing (apt-get install qemu-guest-agent)");
    }

    @AfterEach
    void stop() {
        if (guest != null) guest.close();
        if (agent != null) agent.close();
    }

    private QgaGuest ready() {
        agent = HostQemuGa.start(tmp);
        guest = agent.guest().awaitReady(READY);
        return guest;
    }

    @Test
    void awaitReadyThenPingAndInfo() {
        ready();
        guest.ping();
        JsonNode info = guest.info();
        assertThat(info.path("version").asText()).isNotBlank();
        assertThat(info.path("supported_commands").findValuesAsText("name")).contains("guest-exec", "guest-file-read");
    }

    @Test
    void awaitReadyRetriesUntilTheSocketAppears() throws Exception {
        AtomicInteger attempts = new AtomicInteger();
        try (var pool = Executors.newVirtualThreadPerTaskExecutor(); var closing = closingGuest()) {
            guest = new QgaGuest(() -> {
                attempts.incrementAndGet();
                return open(tmp.resolve("qga.sock"));
            }, () -> "", "late-agent");
            Future<QgaGuest> ready = pool.submit(() -> guest.awaitReady(READY));
            // the socket does not exist yet: connects fail and are retried
            awaitCondition("a failed connection attempt to be retried", () -> attempts.get() >= 2 || ready.isDone(),
                    () -> ready.isDone() ? "awaitReady ended: " + ready.state() : attempts.get() + " attempts");
            assertThat(ready).isNotDone();
            agent = HostQemuGa.start(tmp);
            assertThat(result(ready, "awaitReady to return once the agent listens")).isSameAs(guest);
            assertThat(guest.exec("true").exitCode()).isZero();
        }
    }

    /** A fake stands in for QEMU with no agent behind the port: a socket that accepts and never answers. */
    @Test
    void awaitReadyTimesOutAgainstASilentPeerNamingWhatItAwaitedAndTheLastAttempt() throws Exception {
        Path sock = tmp.resolve("silent.sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(sock));
            guest = new QgaGuest(() -> open(sock), () -> "Booting the kernel…\nlast console line", "silent");
            long t0 = System.nanoTime();
            assertThatThrownBy(() -> guest.awaitReady(Duration.ofMillis(700)))
                    .isInstanceOf(WaitTimeoutException.class)
                    .hasMessageContaining("the guest agent of silent to answer guest-sync-delimited")
                    .hasMessageContaining("700 ms")
                    .hasMessageMatching("(?s).*last attempt: connected, sent guest-sync-delimited \\d+ times, no reply at all.*")
                    .hasMessageContaining("last console line");
            assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(3));
        }
    }

    @Test
    void awaitReadyTimesOutWithoutASocketSayingItCannotConnect() {
        guest = new QgaGuest(() -> open(tmp.resolve("missing.sock")), () -> "", "no-socket");
        assertThatThrownBy(() -> guest.awaitReady(Duration.ofMillis(300)))
                .isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("last attempt: cannot connect")
                .hasMessageContaining("missing.sock");
    }

    /** As in a booting guest: QEMU accepts the connection, but drops what is sent until the agent opens its port. */
    @Test
    void awaitReadySeesAnAgentThatOpensItsPortLate() throws Exception {
        try (SerialPortStandIn port = SerialPortStandIn.listen(tmp.resolve("port.sock"));
             var pool = Executors.newVirtualThreadPerTaskExecutor(); var closing = closingGuest()) {
            guest = new QgaGuest(port::connect, () -> "", "late-port");
            Future<QgaGuest> ready = pool.submit(() -> guest.awaitReady(READY));
            awaitCondition("syncs resent into the unopened port", () -> port.droppedSyncs() >= 3 || ready.isDone(),
                    () -> ready.isDone() ? "awaitReady ended: " + ready.state() : port.droppedSyncs() + " dropped");
            assertThat(ready).isNotDone();
            agent = HostQemuGa.start(tmp.resolve("agent"));
            port.open(agent.connectWhenListening(READY));
            assertThat(result(ready, "awaitReady to return once the port opened")).isSameAs(guest);
            assertThat(guest.exec("echo", "through the port").stdoutText()).isEqualTo("through the port\n");
        }
    }

    /** With resends minutes apart, only the nudge can make the sync go out again after the port opened. */
    @Test
    void nudgeResendsTheSyncAtOnceWhenThePortOpens() throws Exception {
        try (SerialPortStandIn port = SerialPortStandIn.listen(tmp.resolve("port.sock"));
             var pool = Executors.newVirtualThreadPerTaskExecutor(); var closing = closingGuest()) {
            guest = new QgaGuest(port::connect, () -> "", "nudged").readyResend(Duration.ofMinutes(5), Duration.ofMinutes(5));
            Future<QgaGuest> ready = pool.submit(() -> guest.awaitReady(Duration.ofMinutes(2)));
            awaitCondition("the first sync dropped by the unopened port", () -> port.droppedSyncs() >= 1 || ready.isDone(),
                    () -> ready.isDone() ? "awaitReady ended: " + ready.state() : "nothing dropped yet");
            agent = HostQemuGa.start(tmp.resolve("agent"));
            port.open(agent.connectWhenListening(READY));
            assertThat(ready).isNotDone();
            guest.nudge();
            assertThat(result(ready, "awaitReady to return after the nudge")).isSameAs(guest);
            assertThat(port.droppedSyncs()).as("syncs dropped before the port opened").isEqualTo(1);
            guest.ping();
        }
    }

    /** As with a vsock that refuses until the agent listens: the nudge cuts the pause between connection attempts. */
    @Test
    void nudgeRetriesConnectingAtOnce() throws Exception {
        Path agentDir = tmp.resolve("agent");
        AtomicInteger attempts = new AtomicInteger();
        guest = new QgaGuest(() -> {
            attempts.incrementAndGet();
            return open(agentDir.resolve("qga.sock"));
        }, () -> "", "nudged").readyResend(Duration.ofMinutes(5), Duration.ofMinutes(5));
        try (var pool = Executors.newVirtualThreadPerTaskExecutor(); var closing = closingGuest()) {
            Future<QgaGuest> ready = pool.submit(() -> guest.awaitReady(Duration.ofMinutes(2)));
            awaitCondition("a refused connection attempt", () -> attempts.get() >= 1 || ready.isDone(),
                    () -> ready.isDone() ? "awaitReady ended: " + ready.state() : "no attempt yet");
            agent = HostQemuGa.start(agentDir);
            agent.connectWhenListening(READY).close();
            assertThat(ready).isNotDone();
            guest.nudge();
            assertThat(result(ready, "awaitReady to return after the nudge")).isSameAs(guest);
            assertThat(attempts.get()).isEqualTo(2);
        }
    }

    @Test
    void execTrueAndFalse() {
        ready();
        ExecResult t = guest.exec("true");
        assertThat(t.exitCode()).isZero();
        assertThat(t.signal()).isZero();
        assertThat(t.stdout()).isEmpty();
        assertThat(t.stderr()).isEmpty();
        assertThat(t.duration()).isPositive();
        assertThat(guest.exec("false").exitCode()).isEqualTo(1);
    }

    @Test
    void execSeparatesStdoutStderrAndExitCode() {
        ready();
        ExecResult r = guest.exec("sh", "-c", "echo out; echo err >&2; exit 3");
        assertThat(r.exitCode()).isEqualTo(3);
        assertThat(r.stdoutText()).isEqualTo("out\n");
        assertThat(r.stderrText()).isEqualTo("err\n");
        assertThat(r.argv()).containsExactly("sh", "-c", "echo out; echo err >&2; exit 3");
    }

    @Test
    void execReportsTheKillingSignal() {
        ready();
        ExecResult r = guest.exec("sh", "-c", "kill -TERM $$");
        assertThat(r.signal()).isEqualTo(15);
        assertThat(r.exitCode()).isEqualTo(128 + 15);
    }

    @Test
    void stdinRoundTripsThroughCatBinarySafe() {
        ready();
        byte[] in = new byte[70_000];
        new Random(7).nextBytes(in);
        in[0] = 0;
        in[1] = (byte) 0xFF;
        ExecResult r = guest.exec(ExecRequest.of("cat").stdin(in).build());
        assertThat(r.exitCode()).isZero();
        assertThat(r.stdout()).isEqualTo(in);
    }

    @Test
    void envIsAddedToTheAgentsEnvironment() {
        ready();
        ExecResult r = guest.exec(ExecRequest.of("sh", "-c", "printf '%s|%s' \"$GREETING\" \"$PATH\"")
                .env("GREETING", "it's \"quoted\" $HOME; `not run`").build());
        assertThat(r.exitCode()).isZero();
        String[] parts = r.stdoutText().split("\\|", 2);
        assertThat(parts[0]).isEqualTo("it's \"quoted\" $HOME; `not run`");
        assertThat(parts[1]).contains("/bin");
    }

    @Test
    void workingDirectoryIsPassedWithoutInterpolation() throws IOException {
        ready();
        Path dir = Files.createDirectories(tmp.resolve("a dir with $pace and 'quotes'"));
        ExecResult r = guest.exec(ExecRequest.of("sh", "-c", "pwd; printf '%s\\n' \"$@\"", "sh", "$1", "two words")
                .workingDir(dir.toString()).build());
        assertThat(r.exitCode()).isZero();
        assertThat(r.stdoutText()).isEqualTo(dir + "\n$1\ntwo words\n");

        ExecResult missing = guest.exec(ExecRequest.of("true").workingDir(tmp.resolve("nope").toString()).build());
        assertThat(missing.exitCode()).isEqualTo(126);
        assertThat(missing.stderrText()).contains("nope");
    }

    @Test
    void megabytesOfStdoutArriveByteExact() throws IOException {
        ready();
        byte[] data = new byte[1_500_000];
        new Random(42).nextBytes(data);
        Path file = Files.write(tmp.resolve("known.bin"), data);
        ExecResult r = guest.exec("cat", file.toString());
        assertThat(r.exitCode()).isZero();
        assertThat(r.stdout()).isEqualTo(data);
        ExecResult err = guest.exec("sh", "-c", "cat \"$1\" >&2", "sh", file.toString());
        assertThat(err.stderr()).isEqualTo(data);
    }

    @Test
    void outputBeyondTheAgentsCapIsAnErrorAndTheClientRecovers() {
        ready();
        assertThatThrownBy(() -> guest.exec("head", "-c", "17000000", "/dev/zero"))
                .isInstanceOf(GuestException.class)
                .hasMessageContaining("head");
        assertThat(guest.exec("echo", "still in step").stdoutText()).isEqualTo("still in step\n");
    }

    @Test
    void outputBeyondTheAgentsCapSaysTruncated() {
        // qemu-ga keeps 16 MiB per stream: 22.4 M base64 characters in one JSON string
        String tooLong = "{\"s\": \"" + "A".repeat(22_369_624) + "\"}";
        List<Object> parsed = new ArrayList<>();
        try {
            new JsonFramer(parsed::add).feed(ByteBuffer.wrap(tooLong.getBytes(StandardCharsets.US_ASCII)));
        } catch (ProtocolException e) {
            assumeTrue(false, "JsonFramer cannot parse qemu-ga's largest reply (a 16 MiB stream as base64): "
                    + e.getMessage().substring(0, 40) + "… caused by " + e.getCause());
        }
        ready();
        assertThatThrownBy(() -> guest.exec("head", "-c", "17000000", "/dev/zero"))
                .isInstanceOf(GuestException.class)
                .hasMessageContaining("truncated")
                .hasMessageContaining("head");
    }

    @Test
    void aMissingCommandIsAGuestExceptionNamingIt() {
        ready();
        assertThatThrownBy(() -> guest.exec("no-such-command-kiln", "arg"))
                .isInstanceOfSatisfying(GuestException.class, e -> {
                    assertThat(e.errorClass()).isEqualTo("GenericError");
                    assertThat(e.getMessage()).contains("no-such-command-kiln").contains("Failed to execute child process");
                });
        assertThat(guest.exec("true").exitCode()).isZero();
    }

    @Test
    void timeoutKillsTheGuestProcess() throws Exception {
        ready();
        Path pidFile = tmp.resolve("sleep.pid");
        long t0 = System.nanoTime();
        assertThatThrownBy(() -> guest.exec(ExecRequest.of("sh", "-c", "echo $$ > \"$1\"; exec sleep 30", "sh",
                pidFile.toString()).timeout(Duration.ofSeconds(1)).build()))
                .isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("sleep 30")
                .hasMessageContaining("1 s")
                .hasMessageContaining("killed it");
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(4));
        long pid = Long.parseLong(Files.readString(pidFile).strip());
        assertThat(Path.of("/proc/" + pid)).doesNotExist();
        assertThat(guest.exec("true").exitCode()).isZero();
    }

    @Test
    void timeoutKillsWhatTheCommandStartedToo() throws Exception {
        ready();
        Path pidFile = tmp.resolve("child.pid");
        long t0 = System.nanoTime();
        // the background sleep holds stdout open: killing only the shell would leave it, and the exec unreaped
        assertThatThrownBy(() -> guest.exec(ExecRequest.of("sh", "-c", "echo started; sleep 30 & echo $! > \"$1\"; wait",
                "sh", pidFile.toString()).timeout(Duration.ofSeconds(1)).build()))
                .isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("killed it")
                .hasMessageContaining("started");
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(4));
        long pid = Long.parseLong(Files.readString(pidFile).strip());
        // the orphan is reaped by PID 1, which may take its time: a zombie is dead enough
        assertThat(running(pid)).as("pid %d still running", pid).isFalse();
    }

    @Test
    void copyInAndOutTenMebibytesByteExact() throws Exception {
        ready();
        byte[] data = new byte[10 * 1024 * 1024 + 12345];
        new Random(1).nextBytes(data);
        Path src = Files.write(tmp.resolve("src.bin"), data);
        Path inGuest = tmp.resolve("guest-side.bin"); // the "guest" is this host
        guest.copyIn(src, inGuest.toString());
        assertThat(sha256(Files.readAllBytes(inGuest))).isEqualTo(sha256(data));

        Path back = tmp.resolve("back.bin");
        Files.writeString(back, "old content, replaced");
        guest.copyOut(inGuest.toString(), back);
        assertThat(sha256(Files.readAllBytes(back))).isEqualTo(sha256(data));
        try (var files = Files.list(tmp)) {
            assertThat(files.map(p -> p.getFileName().toString())).noneMatch(n -> n.endsWith(".part"));
        }
    }

    @Test
    void copyOfAnEmptyFileAndOfMissingFiles() throws Exception {
        ready();
        Path empty = Files.createFile(tmp.resolve("empty"));
        guest.copyIn(empty, tmp.resolve("empty-in").toString());
        assertThat(tmp.resolve("empty-in")).isEmptyFile();
        guest.copyOut(tmp.resolve("empty-in").toString(), tmp.resolve("empty-out"));
        assertThat(tmp.resolve("empty-out")).isEmptyFile();

        assertThatThrownBy(() -> guest.copyOut("/no/such/file", tmp.resolve("out")))
                .isInstanceOfSatisfying(GuestException.class, e -> {
                    assertThat(e.getMessage()).contains("/no/such/file").contains("No such file");
                    assertThat(e.errorClass()).isEqualTo("GenericError");
                });
        assertThat(tmp.resolve("out")).doesNotExist();
        try (var files = Files.list(tmp)) {
            assertThat(files.map(p -> p.getFileName().toString())).noneMatch(n -> n.endsWith(".part"));
        }
        assertThatThrownBy(() -> guest.copyIn(tmp.resolve("absent"), tmp.resolve("x").toString()))
                .hasMessageContaining("absent");
    }

    @Test
    void resynchronisesAfterAStrayPartialMessage() {
        agent = HostQemuGa.start(tmp);
        guest = new QgaGuest(() -> {
            SocketChannel ch = agent.connect();
            try {
                // half a request left in the agent's parser: without the 0xFF reset, the next request would
                // be swallowed into this string
                ch.write(ByteBuffer.wrap("{\"execute\": \"guest-info\", \"arguments\": {\"x\": \"unterminated"
                        .getBytes(StandardCharsets.UTF_8)));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return ch;
        }, () -> "", "garbled");
        guest.awaitReady(READY);
        guest.ping();
        assertThat(guest.exec("echo", "in step").stdoutText()).isEqualTo("in step\n");
    }

    @Test
    void lateRepliesToTimedOutRequestsAreDiscarded() throws Exception {
        ready();
        agent.signal("STOP"); // a stuck agent: requests time out, and are answered once it goes on
        try {
            assertThatThrownBy(() -> guest.call("guest-info", null, Duration.ofMillis(300)))
                    .isInstanceOf(WaitTimeoutException.class)
                    .hasMessageContaining("guest-info")
                    .hasMessageContaining("300 ms");
            assertThatThrownBy(() -> guest.call("guest-get-time", null, Duration.ofMillis(300)))
                    .isInstanceOf(WaitTimeoutException.class)
                    .hasMessageContaining("guest-sync-delimited before guest-get-time");
        } finally {
            agent.signal("CONT");
        }
        // the late info reply, and the late sync's, must not be taken for these answers
        assertThat(guest.call("guest-ping", null, Duration.ofSeconds(5)).isEmpty()).isTrue();
        assertThat(guest.call("guest-get-time", null, Duration.ofSeconds(5)).isIntegralNumber()).isTrue();
        assertThat(guest.exec("echo", "after").stdoutText()).isEqualTo("after\n");
    }

    /** A fake peer: qemu-ga never sends garbage, so one that does stands in for a broken channel. */
    @Test
    void garbageFromAFakePeerFailsTheRequestThenResyncRecovers() throws Exception {
        int[] pings = {0};
        withFakePeer(msg -> switch (msg.path("execute").asText()) {
            case "guest-sync-delimited" -> "\u00ff{\"return\": " + msg.path("arguments").path("id") + "}";
            case "guest-ping" -> pings[0]++ == 0 ? "not JSON at all " + "x".repeat(100_000) : "{\"return\": {}}";
            default -> "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}";
        }, fake -> {
            fake.awaitReady(READY);
            assertThatThrownBy(fake::ping).isInstanceOf(GuestException.class)
                    .hasMessageContaining("garbage").hasMessageContaining("guest-ping");
            fake.ping(); // resynchronised past the garbage
        });
    }

    /** A sync reply with another id is an answer to an older sync (or a broken peer): never taken for this one. */
    @Test
    void syncRepliesWithTheWrongIdAreNotTakenForReadiness() throws Exception {
        int[] syncs = {0};
        withFakePeer(msg -> switch (msg.path("execute").asText()) {
            case "guest-sync-delimited" -> "\u00ff{\"return\": " + (syncs[0]++ < 3
                    ? msg.path("arguments").path("id").asLong() + 1 : msg.path("arguments").path("id").asLong()) + "}";
            default -> "{\"return\": {}}";
        }, fake -> {
            fake.awaitReady(READY);
            assertThat(syncs[0]).as("syncs sent until one came back with its own id").isEqualTo(4);
            fake.ping();
        });
        withFakePeer(msg -> "\u00ff{\"return\": " + (msg.path("arguments").path("id").asLong() ^ 1) + "}",
                fake -> assertThatThrownBy(() -> fake.awaitReady(Duration.ofSeconds(2)))
                        .isInstanceOf(WaitTimeoutException.class)
                        .hasMessageContaining("the guest agent of fake-peer to answer guest-sync-delimited")
                        .hasMessageContaining("no reply with the latest id")
                        .hasMessageContaining("replies discarded"));
    }

    /** Runs {@code test} against a peer that answers each JSON request with {@code reply}'s raw text. */
    private void withFakePeer(java.util.function.Function<JsonNode, String> reply,
                              java.util.function.Consumer<QgaGuest> test) throws Exception {
        Path sock = Files.createTempDirectory(tmp, "fake").resolve("fake.sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
             var peer = Executors.newVirtualThreadPerTaskExecutor()) {
            server.bind(UnixDomainSocketAddress.of(sock));
            peer.submit(() -> {
                try (SocketChannel ch = server.accept()) {
                    JsonFramer in = new JsonFramer(msg -> {
                        try {
                            ch.write(ByteBuffer.wrap(reply.apply(msg).getBytes(StandardCharsets.ISO_8859_1)));
                        } catch (IOException e) {
                            throw new UncheckedIOException(e);
                        }
                    });
                    ByteBuffer buf = ByteBuffer.allocate(4096);
                    while (ch.read(buf) >= 0) {
                        buf.flip();
                        in.feed(buf);
                        buf.clear();
                    }
                }
                return null;
            });
            try (QgaGuest fake = new QgaGuest(() -> open(sock), () -> "", "fake-peer")) { // closed before the peer
                test.accept(fake);
            }
        }
    }

    @Test
    void agentErrorsCarryClassAndDescription() {
        ready();
        assertThatThrownBy(() -> guest.call("guest-no-such-command", null, Duration.ofSeconds(5)))
                .isInstanceOfSatisfying(GuestException.class, e -> {
                    assertThat(e.errorClass()).isEqualTo("CommandNotFound");
                    assertThat(e.getMessage()).contains("guest-no-such-command");
                });
        guest.ping();
    }

    @Test
    void killingTheAgentFailsARunningExecPromptly() throws Exception {
        ready();
        Path pidFile = tmp.resolve("sleep.pid");
        try (var pool = Executors.newVirtualThreadPerTaskExecutor(); var closing = closingGuest()) {
            Future<ExecResult> running = pool.submit(() -> guest.exec(sleeper(pidFile)));
            long pid = awaitPid(pidFile, running);
            try {
                long t0 = System.nanoTime();
                agent.kill();
                // no vmmState: a connection that closes is all this client knows of
                assertThat(failure(running, "the exec under way to fail as the agent dies"))
                        .isInstanceOf(GuestException.class)
                        .hasMessageContaining("connection").hasMessageContaining("closed");
                assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(2));
            } finally {
                ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
            }
            // and later requests fail at once too
            long t1 = System.nanoTime();
            assertThatThrownBy(() -> guest.exec("true")).isInstanceOf(GuestException.class).hasMessageContaining("closed");
            assertThat(Duration.ofNanos(System.nanoTime() - t1)).isLessThan(Duration.ofMillis(500));
        }
    }

    @Test
    void concurrentExecsAreSerialisedAndEachGetsItsOwnAnswer() throws Exception {
        ready();
        try (var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<String>> results = new ArrayList<>();
            for (int i = 0; i < 40; i++) {
                String word = "w" + i;
                results.add(pool.submit(() -> guest.exec("echo", word).stdoutText()));
            }
            for (int i = 0; i < 40; i++) assertThat(results.get(i).get(30, TimeUnit.SECONDS)).isEqualTo("w" + i + "\n");
        }
    }

    @Test
    void closeIsIdempotentAndLaterRequestsFailAtOnceWithTheReason() {
        ready();
        guest.close("machine vm-1 closed by the test");
        guest.close("a later reason, not kept");
        guest.close();
        assertThatThrownBy(() -> guest.exec("true")).isInstanceOf(MachineClosedException.class)
                .hasMessageContaining("closed (machine vm-1 closed by the test)")
                .hasMessageContaining("guest-exec");
        assertThatThrownBy(guest::ping).isInstanceOf(MachineClosedException.class);
        assertThatThrownBy(() -> guest.awaitReady(READY)).isInstanceOf(MachineClosedException.class)
                .hasMessageContaining("machine vm-1 closed by the test");
        assertThat(guest.toString()).contains("closed (machine vm-1 closed by the test)");
    }

    @Test
    void closingWithAReasonFailsAnExecUnderWayAtOnce() throws Exception {
        ready();
        Path pidFile = tmp.resolve("sleep.pid");
        try (var pool = Executors.newVirtualThreadPerTaskExecutor(); var closing = closingGuest()) {
            Future<ExecResult> running = pool.submit(() -> guest.exec(sleeper(pidFile)));
            long pid = awaitPid(pidFile, running);
            try {
                guest.close("machine vm-1 closed by the test");
                assertThat(failure(running, "the exec under way to fail on close"))
                        .isInstanceOf(MachineClosedException.class)
                        .hasMessageContaining("was closed (machine vm-1 closed by the test)")
                        .hasMessageContaining("sleep 30");
            } finally {
                ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
            }
        }
    }

    /** The VMM dies and its end closes the connection under the exec, before anything closes the client. */
    @Test
    void theVmmDyingUnderAnExecIsAMachineClosedExceptionNamingItsState() throws Exception {
        agent = HostQemuGa.start(tmp);
        HostQemuGa vmm = agent;
        guest = agent.guest(() -> vmm.exitState(Duration.ofSeconds(5))).awaitReady(READY);
        Path pidFile = tmp.resolve("sleep.pid");
        try (var pool = Executors.newVirtualThreadPerTaskExecutor(); var closing = closingGuest()) {
            Future<ExecResult> running = pool.submit(() -> guest.exec(sleeper(pidFile)));
            long pid = awaitPid(pidFile, running);
            try {
                agent.kill();
                assertThat(failure(running, "the exec under way to fail as the agent dies"))
                        .isInstanceOf(MachineClosedException.class)
                        .hasMessageContaining("qemu-ga pid " + vmm.pid() + " killed by signal 9")
                        .hasMessageContaining("connection closed");
            } finally {
                ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
            }
            // the machine's clean-up closes the client afterwards: later calls still name the VMM's death
            guest.close("machine vm-1 cleaned up");
            assertThatThrownBy(() -> guest.exec("true")).isInstanceOf(MachineClosedException.class)
                    .hasMessageContaining("killed by signal 9")
                    .hasMessageContaining("machine vm-1 cleaned up");
        }
    }

    /**
     * The other order: the VMM is dead and the machine's clean-up closes the client before the exec notices
     * anything (the agent is left running here, so the close is all the exec can see). It names the VMM's death.
     */
    @Test
    void aClientClosedAfterTheVmmDiedNamesTheVmmsDeath() throws Exception {
        agent = HostQemuGa.start(tmp);
        AtomicReference<String> vmmState = new AtomicReference<>();
        guest = agent.guest(vmmState::get).awaitReady(READY);
        Path pidFile = tmp.resolve("sleep.pid");
        try (var pool = Executors.newVirtualThreadPerTaskExecutor(); var closing = closingGuest()) {
            Future<ExecResult> running = pool.submit(() -> guest.exec(sleeper(pidFile)));
            long pid = awaitPid(pidFile, running);
            try {
                vmmState.set("QEMU vm-1 killed by SIGKILL");
                guest.close("machine vm-1 cleaned up");
                assertThat(failure(running, "the exec under way to fail on close"))
                        .isInstanceOf(MachineClosedException.class)
                        .hasMessageContaining("QEMU vm-1 killed by SIGKILL")
                        .hasMessageContaining("machine vm-1 cleaned up");
            } finally {
                ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
            }
        }
    }

    /**
     * Closes the guest when a test's resources close, before its executor waits for its tasks: a call still
     * waiting (the test failed) then ends at once instead of holding the executor until its own timeout.
     */
    private AutoCloseable closingGuest() {
        return () -> {
            if (guest != null) guest.close("the test is over");
        };
    }

    /** A command that writes its pid to {@code pidFile}, then sleeps 30 s as that pid. */
    private static ExecRequest sleeper(Path pidFile) {
        return ExecRequest.of("sh", "-c", "echo $$ > \"$1\"; exec sleep 30", "sh", pidFile.toString()).build();
    }

    /** Waits until the command under {@code running} has written its pid: from then on the exec is under way. */
    private static long awaitPid(Path pidFile, Future<?> running) {
        awaitCondition("the command to write its pid to " + pidFile, () -> readPid(pidFile) > 0 || running.isDone(),
                () -> running.isDone() ? "the exec ended: " + running.state() : "no pid yet");
        assertThat(running).as("the exec is under way").isNotDone();
        return readPid(pidFile);
    }

    private static long readPid(Path pidFile) {
        try {
            String s = Files.exists(pidFile) ? Files.readString(pidFile) : "";
            return s.endsWith("\n") ? Long.parseLong(s.strip()) : 0;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** What {@code f} returns, within 10 s. */
    private static <T> T result(Future<T> f, String what) throws InterruptedException {
        try {
            return f.get(READY.toNanos(), TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            throw new AssertionError("timed out after " + READY.toSeconds() + " s waiting for " + what, e);
        } catch (ExecutionException e) {
            throw new AssertionError("expected " + what + ", but it failed: " + e.getCause(), e.getCause());
        }
    }

    /** How {@code f} fails, within 10 s. */
    private static Throwable failure(Future<?> f, String what) throws InterruptedException {
        try {
            Object r = f.get(READY.toNanos(), TimeUnit.NANOSECONDS);
            throw new AssertionError("expected " + what + ", but it returned " + r);
        } catch (TimeoutException e) {
            throw new AssertionError("timed out after " + READY.toSeconds() + " s waiting for " + what, e);
        } catch (ExecutionException e) {
            return e.getCause();
        }
    }

    /** Polls a condition every millisecond until it holds; fails after 10 s saying what was awaited and seen. */
    static void awaitCondition(String what, BooleanSupplier condition, Supplier<String> seen) {
        long end = System.nanoTime() + READY.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - end > 0) {
                throw new AssertionError("timed out after " + READY.toSeconds() + " s waiting for " + what
                        + "; last seen: " + seen.get());
            }
            LockSupport.parkNanos(1_000_000);
        }
    }

    @Test
    void shutdownRefusedByTheAgentIsAGuestException() {
        agent = HostQemuGa.start(tmp, List.of(), List.of("-b", "guest-shutdown"));
        guest = agent.guest().awaitReady(READY);
        assertThatThrownBy(guest::shutdown)
                .isInstanceOfSatisfying(GuestException.class, e -> {
                    assertThat(e.errorClass()).isEqualTo("CommandNotFound");
                    assertThat(e.getMessage()).contains("guest-shutdown").contains("disabled");
                });
        guest.ping(); // back in step after the refused shutdown
    }

    /**
     * The agent runs /sbin/shutdown; a private mount namespace binds a stand-in over it, so this never
     * touches the host. The stand-in records its arguments and then ends the agent, as a powering-off
     * guest would.
     */
    @Test
    void shutdownRunsPowerdownAndReturnsWhenTheGuestGoesAway() throws Exception {
        Path marker = tmp.resolve("shutdown-args");
        Path fake = fakeShutdown("echo \"$@\" > '" + marker + "'; (sleep 0.2; kill -9 $PPID) >/dev/null 2>&1 & exit 0");
        agent = startWithFakeShutdown(fake);
        guest = agent.guest().awaitReady(READY);
        long t0 = System.nanoTime();
        guest.shutdown();
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(2));
        assertThat(Files.readString(marker)).contains("-P").contains("+0");
        assertThat(agent.exitState(READY)).as("qemu-ga ended by the stand-in for shutdown; its log: %s", agent.logText())
                .isNotNull();
        assertThatThrownBy(guest::ping).isInstanceOf(GuestException.class).hasMessageContaining("closed");
    }

    @Test
    void shutdownThatFailsInTheGuestIsAGuestException() throws Exception {
        agent = startWithFakeShutdown(fakeShutdown("exit 1"));
        guest = agent.guest().awaitReady(READY);
        assertThatThrownBy(guest::shutdown).isInstanceOf(GuestException.class)
                .hasMessageContaining("guest-shutdown").hasMessageContaining("failed to shutdown");
        guest.ping();
    }

    private Path fakeShutdown(String body) throws IOException {
        Path fake = tmp.resolve("fake-shutdown");
        Files.writeString(fake, "#!/bin/sh\n" + body + "\n");
        Files.setPosixFilePermissions(fake, PosixFilePermissions.fromString("rwxr-xr-x"));
        return fake;
    }

    /** Only ever starts the agent when the stand-in is mounted over /sbin/shutdown; skips otherwise. */
    private HostQemuGa startWithFakeShutdown(Path fake) throws Exception {
        String mount = "mount --bind \"$1\" /sbin/shutdown";
        Process probe = new ProcessBuilder("unshare", "-m", "sh", "-c", mount + " && cmp -s \"$1\" /sbin/shutdown",
                "sh", fake.toString()).redirectErrorStream(true).start();
        boolean bound = probe.waitFor(10, TimeUnit.SECONDS) && probe.exitValue() == 0;
        String output = new String(probe.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assumeTrue(bound, "needs unshare -m and mount --bind (root) to stand in for /sbin/shutdown: " + output);
        // && guards the agent: it never starts where the real /sbin/shutdown would run
        return HostQemuGa.start(tmp, List.of("unshare", "-m", "sh", "-c", mount + " && shift && exec \"$@\"", "sh",
                fake.toString()), List.of());
    }

    private static boolean running(long pid) throws IOException {
        try {
            return Files.readAllLines(Path.of("/proc/" + pid + "/status")).stream()
                    .noneMatch(line -> line.startsWith("State:") && line.contains("Z"));
        } catch (java.nio.file.NoSuchFileException e) {
            return false;
        }
    }

    private static SocketChannel open(Path socket) {
        try {
            return SocketChannel.open(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot connect to " + socket + " (" + e.getMessage() + ")", e);
        }
    }

    private static String sha256(byte[] bytes) throws NoSuchAlgorithmException {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
    }
}
