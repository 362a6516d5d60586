package dev.kiln;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.ref.WeakReference;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Console over a real unix socket, with the test writing the VMM's side. */
@Timeout(60)
class ConsoleTest {
    private static final Duration WAIT = Duration.ofSeconds(10);

    @TempDir
    Path tmp;

    private Console console;
    private SocketChannel vmm;     // the VMM's end: what the guest prints goes in here
    private final List<Thread> threads = new ArrayList<>();

    @BeforeEach
    void connect() throws IOException {
        console = new Console("test-vm");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(tmp.resolve("console.sock")));
            vmm = SocketChannel.open(server.getLocalAddress());
            console.attach(server.accept());
        }
    }

    @AfterEach
    void close() throws Exception {
        console.close();
        vmm.close();
        for (Thread t : threads) {
            t.interrupt();
            t.join(WAIT);
            assertThat(t.isAlive()).as("%s ended", t).isFalse();
        }
    }

    private void print(String s) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(s.getBytes(StandardCharsets.UTF_8));
        while (b.hasRemaining()) vmm.write(b);
    }

    // ---------------------------------------------------------------- cursors

    @Test
    void twoThreadsAwaitingTheSameTextConcurrentlyBothSeeIt() throws Exception {
        CompletableFuture<String> first = new CompletableFuture<>();
        CompletableFuture<String> second = new CompletableFuture<>();
        Thread a = waiter("first", first, () -> console.await(Pattern.compile("login: (\\w+)"), WAIT).group(1));
        Thread b = waiter("second", second, () -> console.await(Pattern.compile("login: (\\w+)"), WAIT).group(1));
        awaitWaiting(a);
        awaitWaiting(b);
        print("Welcome\nlogin: root\n");
        assertThat(first.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEqualTo("root");
        assertThat(second.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEqualTo("root");
    }

    @Test
    void eachThreadAwaitsLikeExpectFromTheStartOfTheTranscript() throws Exception {
        print("step 1\nstep 2\n");
        assertThat(console.await(Pattern.compile("step (\\d)"), WAIT).group(1)).isEqualTo("1");
        assertThat(console.await(Pattern.compile("step (\\d)"), WAIT).group(1)).isEqualTo("2");
        assertThatThrownBy(() -> console.await("step", Duration.ofMillis(100)))
                .isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("/\\Qstep\\E/ on console test-vm")
                .hasMessageContaining("it appeared before the cursor");

        // another thread's first await starts at the beginning, whatever this thread matched
        CompletableFuture<String> other = new CompletableFuture<>();
        waiter("other", other, () -> console.await(Pattern.compile("step (\\d)"), WAIT).group(1));
        assertThat(other.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEqualTo("1");

        print("step 3\n");
        assertThat(console.await(Pattern.compile("step (\\d)"), WAIT).group(1)).isEqualTo("3");
    }

    @Test
    void cursorsStartAtTheEndOrTheStartAndMoveOnlyThemselves() throws Exception {
        print("old line\n");
        awaitTranscript("old line\n");
        Console.Cursor fromNow = console.cursor();
        Console.Cursor fromStart = console.cursorAtStart();
        assertThat(fromStart.position()).isZero();
        assertThat(fromNow.position()).isEqualTo("old line\n".length());

        assertThat(fromStart.await("line", WAIT).start()).isEqualTo(4);
        assertThatThrownBy(() -> fromNow.await("old", Duration.ofMillis(50))).isInstanceOf(WaitTimeoutException.class);

        print("new line\n");
        MatchResult m = fromNow.await(Pattern.compile("(\\w+) line"), WAIT);
        assertThat(m.group(1)).isEqualTo("new");
        assertThat(fromNow.position()).isEqualTo("old line\nnew line".length());
        // the other cursor did not move with it: it still sees the new line's match after the old one
        assertThat(fromStart.await(Pattern.compile("(\\w+) line"), WAIT).group(1)).isEqualTo("new");
        assertThat(console.cursorAtStart().await("old", WAIT).group()).isEqualTo("old");
    }

    @Test
    void awaitFailsAtOnceWhenTheOutputEndsWithoutAMatch() throws Exception {
        CompletableFuture<String> waiting = new CompletableFuture<>();
        Thread t = waiter("waiting", waiting, () -> console.cursor().await("never printed", Duration.ofMinutes(5)).group());
        awaitWaiting(t);
        print("last words\n");
        vmm.close();
        assertThatThrownBy(() -> waiting.get(WAIT.toSeconds(), TimeUnit.SECONDS))
                .cause().isInstanceOf(GuestException.class)
                .hasMessageContaining("console test-vm closed (the VM closed its console)")
                .hasMessageContaining("last words");
    }

    @Test
    void aThreadThatEndedLeavesNoCursorBehind() throws Exception {
        print("hello\n");
        Thread t = Thread.ofPlatform().unstarted(() -> console.await("hello", WAIT));
        t.start();
        t.join(WAIT);
        assertThat(t.isAlive()).isFalse();
        WeakReference<Thread> ref = new WeakReference<>(t);
        t = null;
        awaitCondition("the ended thread to be collected (the console must not hold it)", () -> {
            System.gc();
            return ref.get() == null;
        }, () -> "still reachable: " + ref.get());
    }

    // ---------------------------------------------------------------- tees

    @Test
    void aTeeFileThatFailsIsReportedAndDroppedAndReadingGoesOn() throws Exception {
        Path full = Path.of("/dev/full");
        assumeTrue(Files.isWritable(full), "needs a writable /dev/full, whose writes fail with ENOSPC");
        List<String> lines = new CopyOnWriteArrayList<>();
        console.teeTo(full).teeLines(lines::add);
        print("first\n");
        awaitCondition("the tee failure to be reported", () -> console.teeFailure().isPresent(),
                () -> "transcript: " + console.transcript());
        assertThat(console.teeFailure().orElseThrow()).contains("/dev/full").contains("No space left on device");

        print("second\n");
        assertThat(console.await("second", WAIT).group()).isEqualTo("second");
        assertThat(console.isOpen()).isTrue();
        awaitCondition("both lines at the line tee", () -> lines.size() == 2, lines::toString);
        assertThat(lines).containsExactly("first", "second");

        // a new tee file replaces the dropped one and gets what comes from now on
        Path file = tmp.resolve("console.log");
        console.teeTo(file);
        print("third\n");
        console.await("third", WAIT);
        awaitCondition("the third line in " + file, () -> read(file).equals("third\n"), () -> read(file));
    }

    @Test
    void aLineConsumerThatThrowsIsDroppedAndTheOthersGoOn() throws Exception {
        List<String> seenByTheFailing = new CopyOnWriteArrayList<>();
        List<String> lines = new CopyOnWriteArrayList<>();
        Path file = tmp.resolve("console.log");
        console.teeTo(file).teeLines(line -> {
            seenByTheFailing.add(line);
            throw new IllegalStateException("the logger is broken");
        }).teeLines(lines::add);
        print("one\ntwo\n");
        awaitCondition("two lines at the line tee", () -> lines.size() == 2, lines::toString);
        assertThat(console.teeFailure()).hasValueSatisfying(f ->
                assertThat(f).contains("threw").contains("the logger is broken"));
        assertThat(seenByTheFailing).containsExactly("one");

        print("three\n");
        assertThat(console.await("three", WAIT).group()).isEqualTo("three");
        awaitCondition("three lines at the line tee", () -> lines.size() == 3, lines::toString);
        assertThat(lines).containsExactly("one", "two", "three");
        assertThat(seenByTheFailing).containsExactly("one");
        awaitCondition("everything in the tee file", () -> read(file).equals("one\ntwo\nthree\n"), () -> read(file));
    }

    @Test
    void theLineTeeGetsEachLineOnceWithoutItsLineEnd() throws Exception {
        List<String> lines = new CopyOnWriteArrayList<>();
        console.teeLines(lines::add);
        print("Linux ver");
        print("sion 6.1\r\n\r\nä");     // UTF-8 split across writes below, too
        byte[] euro = "€ sign\nno newline at the end".getBytes(StandardCharsets.UTF_8);
        vmm.write(ByteBuffer.wrap(Arrays.copyOfRange(euro, 0, 1)));
        console.await("ä", WAIT);
        vmm.write(ByteBuffer.wrap(Arrays.copyOfRange(euro, 1, euro.length)));
        console.await("no newline", WAIT);
        vmm.close();
        awaitCondition("the output to end", () -> !console.isOpen(), console::transcript);
        assertThat(lines).containsExactly("Linux version 6.1", "", "ä€ sign", "no newline at the end");
    }

    // ---------------------------------------------------------------- reading in batches

    /** Reading in batches must not hold back what a waiter awaits: each marker arrives while bytes trickle in. */
    @Test
    void anAwaitedLineIsSeenPromptlyWhileOutputTrickles() throws Exception {
        List<Long> micros = new ArrayList<>();
        Console.Cursor cursor = console.cursor();
        for (int i = 0; i < 100; i++) {
            print("x".repeat(i % 7));
            long t0 = System.nanoTime();
            print("marker-" + i + "\n");
            cursor.await("marker-" + i + "\n", WAIT);
            micros.add((System.nanoTime() - t0) / 1000);
        }
        micros.sort(null);
        // Generous: the reader pauses about 1 ms between batches; this only catches batches that wait far longer.
        assertThat(micros.get(micros.size() / 2)).as("median µs from write to await, of %s", micros).isLessThan(50_000);
    }

    // ---------------------------------------------------------------- helpers

    private Thread waiter(String name, CompletableFuture<String> result, Supplier<String> await) {
        Thread t = Thread.ofPlatform().name("console-waiter-" + name).start(() -> {
            try {
                result.complete(await.get());
            } catch (Throwable e) {
                result.completeExceptionally(e);
            }
        });
        threads.add(t);
        return t;
    }

    /** Waits until {@code t} is parked in its await (or has already finished). */
    private static void awaitWaiting(Thread t) {
        awaitCondition(t.getName() + " to wait for console output",
                () -> t.getState() == Thread.State.TIMED_WAITING || t.getState() == Thread.State.TERMINATED,
                () -> "state " + t.getState());
    }

    private void awaitTranscript(String expected) {
        awaitCondition("the transcript to be " + expected, () -> console.transcript().equals(expected), console::transcript);
    }

    private static String read(Path file) {
        try {
            return Files.exists(file) ? Files.readString(file) : "(no file)";
        } catch (IOException e) {
            return "(cannot read: " + e + ")";
        }
    }

    /** Polls a condition every millisecond until it holds; fails after {@link #WAIT} saying what was awaited and seen. */
    static void awaitCondition(String what, BooleanSupplier condition, Supplier<String> seen) {
        long end = System.nanoTime() + WAIT.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - end > 0) {
                throw new AssertionError("timed out after " + WAIT.toSeconds() + " s waiting for " + what
                        + "; last seen: " + seen.get());
            }
            LockSupport.parkNanos(1_000_000);
        }
    }
}
