package dev.kiln.ssh;

import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.GuestProcess;
import dev.kiln.KilnException;
import dev.kiln.SshChannel;
import dev.kiln.WaitTimeoutException;
import dev.kiln.vmm.spi.SshConnector;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.ServiceLoader;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static dev.kiln.ssh.HostSshd.WAIT;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The SSH channel against the host's own OpenSSH server (a private sshd on a free port): the guest is this machine. */
class MinaSshChannelTest {
    @TempDir
    static Path dir;
    static HostSshd sshd;
    static SshChannel ssh;
    static final SshConnector connector = new MinaSshConnector();

    @BeforeAll
    static void startSshd() throws Exception {
        assumeTrue(Files.isExecutable(HostSshd.SSHD), HostSshd.SSHD + " is missing (apt-get install openssh-server)");
        sshd = new HostSshd(dir);
        ssh = connector.connect(sshd.target(), WAIT);
    }

    @AfterAll
    static void stopSshd() throws Exception {
        if (ssh != null) ssh.close();
        if (sshd != null) {
            assertThat(sshd.stop()).as("processes left by sshd and its sessions").extracting(p -> p.pid() + " " + p.info()).isEmpty();
        }
    }

    @Test
    void theConnectorIsAService() {
        assertThat(ServiceLoader.load(SshConnector.class).stream().map(ServiceLoader.Provider::type))
                .contains(MinaSshConnector.class);
    }

    @Test
    void execGivesExitCodeStdoutAndStderr() {
        ExecResult r = ssh.awaitReady(WAIT).exec("sh", "-c", "echo out; echo err >&2; exit 3");
        assertThat(r.exitCode()).isEqualTo(3);
        assertThat(r.signal()).isZero();
        assertThat(r.stdoutText()).isEqualTo("out\n");
        assertThat(r.stderrText()).isEqualTo("err\n");
        assertThat(ssh.user()).isEqualTo(sshd.user);
        assertThat(ssh.address()).isEqualTo(sshd.address());
        assertThat(ssh.hostKey()).isEqualTo(sshd.hostKey.getPublic());
    }

    @Test
    void argvStdinEnvAndWorkingDirPassUnchanged() {
        assertThat(ssh.exec("printf", "[%s]", "a b", "'", "$(id)", "\"", "*", "").stdoutText())
                .isEqualTo("[a b]['][$(id)][\"][*][]");
        ExecResult r = ssh.exec(ExecRequest.of("sh", "-c", "cat; echo \"|$A|$B|\"; pwd").stdin("in put\n")
                .env("A", "x y'z").env("B", "$HOME").workingDir(dir.toString()).build());
        assertThat(r.stdoutText()).isEqualTo("in put\n|x y'z|$HOME|\n" + dir + "\n");
        assertThat(ssh.exec(ExecRequest.of("ls").workingDir("/no/such/dir").build()).exitCode())
                .as("a working directory that is not there is a result").isNotZero();
    }

    @Test
    void stdinToStdoutIsBinarySafe() {
        byte[] data = random(3 << 20);
        ExecResult r = ssh.exec(ExecRequest.of("cat").stdin(data).build());
        assertThat(r.exitCode()).isZero();
        assertThat(r.stdout()).isEqualTo(data);
    }

    @Test
    void callbacksGetTheOutputAsItComes() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ExecResult r = ssh.exec(ExecRequest.of("sh", "-c", "echo one; echo two >&2; echo three")
                .onStdout(out::writeBytes).build());
        assertThat(out.toString(StandardCharsets.UTF_8)).isEqualTo("one\nthree\n");
        assertThat(r.stdout()).isEmpty();
        assertThat(r.stderrText()).isEqualTo("two\n");
    }

    @Test
    void execKeepsAtMost64MiBPerStream() {
        assertThatThrownBy(() -> ssh.exec("head", "-c", Long.toString((64L << 20) + 1), "/dev/zero"))
                .isInstanceOf(GuestException.class).hasMessageContaining("more than 64 MiB to stdout");
    }

    @Test
    void aTimeoutKillsTheCommandAndWhatItStarted() {
        assertThatThrownBy(() -> ssh.exec(ExecRequest.of("sh", "-c", "sleep 300 & echo child $!; wait")
                .timeout(Duration.ofSeconds(3)).build()))
                .isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("command [sh, -c, sleep 300 & echo child $!; wait]")
                .hasMessageContaining("to finish; killed it")
                .hasMessageContaining("child ")
                .satisfies(e -> assertDead(Long.parseLong(((WaitTimeoutException) e).seen().replaceAll("(?s).*child (\\d+).*", "$1"))));
    }

    @Test
    void aMissingCommandIsAGuestException() {
        assertThatThrownBy(() -> ssh.exec("no-such-command-kiln"))
                .isInstanceOf(GuestException.class)
                .hasMessageContaining("'no-such-command-kiln' is not a command there");
        assertThatThrownBy(() -> ssh.start("/no/such/command"))
                .isInstanceOf(GuestException.class).hasMessageContaining("is not a command there");
    }

    @Test
    void startStreamsStdoutAndStdinWhileItRuns() throws Exception {
        try (GuestProcess cat = ssh.start("cat")) {
            assertThat(cat.pid()).isPositive();
            assertThat(cat.argv()).containsExactly("cat");
            BufferedReader out = new BufferedReader(new InputStreamReader(cat.stdout(), StandardCharsets.UTF_8));
            cat.stdin().write("first\n".getBytes(StandardCharsets.UTF_8));
            assertThat(out.readLine()).isEqualTo("first");
            assertThat(cat.isAlive()).isTrue();
            assertThat(cat.exitCode()).isEmpty();
            cat.stdin().write("second\n".getBytes(StandardCharsets.UTF_8));
            assertThat(out.readLine()).isEqualTo("second");
            cat.stdin().close();
            assertThat(out.readLine()).isNull();
            assertThat(cat.waitFor(WAIT)).isZero();
            assertThat(cat.isAlive()).isFalse();
            assertThat(cat.exitCode()).hasValue(0);
        }
    }

    @Test
    void startWithCallbacksAndFixedStdin() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (GuestProcess p = ssh.start(ExecRequest.of("tr", "a-z", "A-Z").stdin("shout\n").onStdout(out::writeBytes).build())) {
            assertThat(p.waitFor(WAIT)).isZero();
        }
        assertThat(out.toString(StandardCharsets.UTF_8)).isEqualTo("SHOUT\n");
    }

    @Test
    void signalFifteenGives143() {
        try (GuestProcess sleep = ssh.start("sleep", "300")) {
            sleep.signal(15);
            assertThat(sleep.waitFor(WAIT)).isEqualTo(143);
            assertThat(sleep.exitCode()).hasValue(143);
        }
    }

    @Test
    void killKillsWhatItStartedToo() throws IOException {
        try (GuestProcess sh = ssh.start("sh", "-c", "sleep 300 & echo $!; wait")) {
            long child = Long.parseLong(new BufferedReader(new InputStreamReader(sh.stdout(), StandardCharsets.UTF_8)).readLine());
            sh.kill();
            assertThat(sh.waitFor(WAIT)).isEqualTo(128 + 9);
            assertDead(sh.pid());
            assertDead(child);
        }
    }

    @Test
    void waitForTimesOutAndCloseKills() {
        GuestProcess sleep = ssh.start("sleep", "300");
        assertThatThrownBy(() -> sleep.waitFor(Duration.ofMillis(300)))
                .isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("process " + sleep.pid() + " [sleep, 300]").hasMessageContaining("to exit");
        assertThat(sleep.isAlive()).isTrue();
        sleep.close();
        assertDead(sleep.pid());
    }

    @Test
    void moreCommandsThanOneConnectionCarriesRunTogether() throws IOException {
        // OpenSSH takes MaxSessions (10) commands per connection: the rest go on further connections.
        List<GuestProcess> sleeps = new ArrayList<>();
        long loginsBefore = logins();
        try {
            for (int i = 0; i < 12; i++) sleeps.add(ssh.start("sleep", "300"));
            assertThat(logins() - loginsBefore).as("further connections").isGreaterThanOrEqualTo(1);
            assertThat(sleeps).allMatch(GuestProcess::isAlive);
            assertThat(ssh.exec("echo", "still-answers").stdoutText()).isEqualTo("still-answers\n");
            Path small = Files.write(dir.resolve("small"), new byte[] {4, 2});
            ssh.copyIn(small, dir.resolve("small-in-guest").toString());
            sleeps.getLast().signal(15);
            assertThat(sleeps.getLast().waitFor(WAIT)).isEqualTo(143);
        } finally {
            sleeps.forEach(GuestProcess::close); // their kill commands need channels too
        }
        for (GuestProcess p : sleeps) assertDead(p.pid());
    }

    @Test
    void copiesAreByteForByte() throws IOException {
        byte[] data = random((5 << 20) + 17);
        Path in = Files.write(dir.resolve("copy-in"), data), back = dir.resolve("copy-back");
        String guestPath = dir.resolve("in-guest").toString();
        ssh.copyIn(in, guestPath);
        ssh.copyOut(guestPath, back);
        assertThat(Files.readAllBytes(back)).isEqualTo(data);
        assertThat(ssh.exec("cmp", in.toString(), guestPath).exitCode()).isZero();
        ssh.copyIn(Files.write(dir.resolve("short"), new byte[] {1, 2, 3}), guestPath);
        assertThat(ssh.exec("stat", "-c", "%s", guestPath).stdoutText().strip()).as("truncated").isEqualTo("3");
    }

    @Test
    void copyingAMissingGuestFileSaysSo() {
        Path target = dir.resolve("never");
        assertThatThrownBy(() -> ssh.copyOut("/no/such/file", target))
                .isInstanceOf(GuestException.class)
                .hasMessageContaining("cannot copy /no/such/file out of host-sshd").hasMessageContaining("No such file");
        assertThat(target).doesNotExist();
        assertThatThrownBy(() -> ssh.copyIn(Files.write(dir.resolve("x"), new byte[1]), "/no/such/dir/x"))
                .isInstanceOf(GuestException.class).hasMessageContaining("/no/such/dir/x");
    }

    @Test
    void localAndRemoteForwardsCarryBytes() throws Exception {
        try (Echo echo = new Echo()) {
            try (SshChannel.Forward local = ssh.forwardLocal(echo.port())) {
                assertThat(local.listening().getAddress().isLoopbackAddress()).isTrue();
                assertThat(roundTrip(local.listening(), "through -L")).isEqualTo("through -L");
            }
            // The guest is this machine: its loopback port is reached from here.
            try (SshChannel.Forward remote = ssh.forwardRemote(0, new InetSocketAddress("127.0.0.1", echo.port()))) {
                assertThat(remote.listening().getPort()).isPositive();
                assertThat(roundTrip(new InetSocketAddress("127.0.0.1", remote.listening().getPort()), "through -R"))
                        .isEqualTo("through -R");
            }
        }
    }

    @Test
    void aWrongHostKeyIsRefusedNamingBothKeys() {
        var other = HostSshd.ecKeyPair();
        assertThatThrownBy(() -> connector.connect(sshd.target(sshd.user, sshd.clientKey, other), WAIT))
                .isExactlyInstanceOf(KilnException.class)
                .hasMessageContaining("offered host key " + MinaSshConnector.fingerprint(sshd.hostKey.getPublic()))
                .hasMessageContaining("only " + MinaSshConnector.fingerprint(other.getPublic()) + " is accepted")
                .hasMessageContaining("SHA256:");
    }

    @Test
    void aKeyTheGuestDoesNotKnowIsRefused() {
        var stranger = HostSshd.ecKeyPair();
        assertThatThrownBy(() -> connector.connect(sshd.target(sshd.user, stranger, sshd.hostKey), WAIT))
                .isExactlyInstanceOf(KilnException.class)
                .hasMessageContaining("refused the key " + MinaSshConnector.fingerprint(stranger.getPublic())
                        + " for user " + sshd.user);
    }

    @Test
    void nothingListeningTimesOutNamingTheAddress() throws IOException {
        int port = HostSshd.freePort();
        var target = new SshConnector.Target("silent", () -> new InetSocketAddress("127.0.0.1", port), sshd.user,
                sshd.clientKey, sshd.hostKey.getPublic(), () -> "console: still booting");
        assertThatThrownBy(() -> connector.connect(target, Duration.ofMillis(1500)))
                .isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("sshd of silent at /127.0.0.1:" + port)
                .hasMessageContaining("Connection refused")
                .hasMessageContaining("console: still booting");
    }

    @Test
    void closeEndsCommandsAndLeavesNoThreads() throws IOException {
        Set<String> before = sshdThreads();
        SshChannel own = connector.connect(sshd.target(), WAIT);
        assertThat(sshdThreads()).isNotEqualTo(before);
        // Ten channels, as many as the connection takes: the kill needs a further one.
        List<GuestProcess> sleeps = new ArrayList<>();
        for (int i = 0; i < 8; i++) sleeps.add(own.start("sleep", "300"));
        GuestProcess tree = own.start("sh", "-c", "sleep 300 & echo $!; wait");
        long child = Long.parseLong(new BufferedReader(new InputStreamReader(tree.stdout(), StandardCharsets.UTF_8)).readLine());
        // Its own process gone, a child it left holds its output open.
        GuestProcess orphaning = own.start("sh", "-c", "sleep 300 & echo $!");
        long orphan = Long.parseLong(new BufferedReader(new InputStreamReader(orphaning.stdout(), StandardCharsets.UTF_8)).readLine());
        own.close();
        own.close();
        assertThat(sshdThreads()).isSubsetOf(before);
        for (GuestProcess p : sleeps) assertDead(p.pid());
        assertDead(tree.pid());
        assertDead(child);
        assertDead(orphan);
        assertThatThrownBy(() -> own.exec("true")).isInstanceOf(KilnException.class).hasMessageContaining("closed");
    }

    @Test
    void abortEndsTheConnectionsAtOnceAndKillsNothing() {
        Set<String> before = sshdThreads();
        SshConnector.Session own = connector.connect(sshd.target(), WAIT);
        GuestProcess sleep = own.start("sleep", "300");
        CompletableFuture<Integer> waiting = CompletableFuture.supplyAsync(() -> sleep.waitFor(Duration.ofMinutes(10)));
        own.abort();
        own.abort();
        assertThatThrownBy(() -> waiting.get(WAIT.toSeconds(), TimeUnit.SECONDS)).as("a wait on the session ends with it")
                .isInstanceOf(ExecutionException.class).hasCauseInstanceOf(KilnException.class);
        assertThat(sshdThreads()).isSubsetOf(before);
        assertThatThrownBy(() -> own.exec("true")).isInstanceOf(KilnException.class).hasMessageContaining("closed");
        assertThat(ProcessHandle.of(sleep.pid())).as("the command, left to its machine").hasValueSatisfying(p -> assertThat(p.isAlive()).isTrue());
        assertThat(ssh.exec("kill", Long.toString(sleep.pid())).exitCode()).isZero();
        assertDead(sleep.pid());
    }

    // ---- helpers

    /** How many logins the test sshd has let in so far. */
    private static long logins() {
        return sshd.log().lines().filter(l -> l.contains("Accepted publickey")).count();
    }

    private static Set<String> sshdThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(Thread::isAlive).map(Thread::getName)
                .filter(n -> n.startsWith("sshd-")).collect(Collectors.toSet());
    }

    /** The guest is this machine: its pids are ours to watch. */
    private static void assertDead(long pid) {
        ProcessHandle.of(pid).ifPresent(p -> {
            try {
                p.onExit().get(WAIT.toSeconds(), TimeUnit.SECONDS);
            } catch (Exception e) {
                throw new AssertionError("process " + pid + " still runs: " + p.info(), e);
            }
        });
    }

    private static byte[] random(int n) {
        byte[] b = new byte[n];
        ThreadLocalRandom.current().nextBytes(b);
        return b;
    }

    private static String roundTrip(InetSocketAddress to, String text) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(to, (int) WAIT.toMillis());
            s.setSoTimeout((int) WAIT.toMillis());
            s.getOutputStream().write((text + "\n").getBytes(StandardCharsets.UTF_8));
            return new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8)).readLine();
        }
    }

    /** A TCP echo server on the loopback: a service "in the guest", and a target on the host. */
    private static final class Echo implements AutoCloseable {
        private final ServerSocket server = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress());

        Echo() throws IOException {
            Thread.ofVirtual().name("echo").start(() -> {
                while (!server.isClosed()) {
                    try {
                        Socket s = server.accept();
                        Thread.ofVirtual().start(() -> {
                            try (s; InputStream in = s.getInputStream(); OutputStream out = s.getOutputStream()) {
                                in.transferTo(out);
                            } catch (IOException e) {
                                // the client went
                            }
                        });
                    } catch (IOException e) {
                        return; // closed
                    }
                }
            });
        }

        int port() { return server.getLocalPort(); }

        @Override
        public void close() throws IOException {
            server.close();
        }
    }
}
