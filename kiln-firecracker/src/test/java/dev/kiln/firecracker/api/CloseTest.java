package dev.kiln.firecracker.api;

import dev.kiln.MachineClosedException;
import dev.kiln.support.Deadline;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

/**
 * Closing the client while Firecracker does not answer (it is SIGSTOPped): the call under way and the calls
 * waiting behind it fail at once with {@link MachineClosedException} carrying the reason, and so does every later
 * call. The bounds are generous (5 s); what they rule out is waiting out the 30 s call timeout.
 */
class CloseTest {
    private static final Duration PROMPTLY = Duration.ofSeconds(5);

    private FirecrackerProcess firecracker;
    private FirecrackerApi api;
    private final List<Thread> callers = new ArrayList<>();

    @AfterEach
    void cleanUp() throws InterruptedException {
        try {
            if (api != null) api.close();
        } finally {
            if (firecracker != null) firecracker.close();
        }
        for (Thread caller : callers) {
            caller.join(PROMPTLY);
            assertThat(caller.isAlive()).as("caller thread %s still running", caller.getName()).isFalse();
        }
        ApiThreads.assertNoneLeft();
    }

    @Test
    void closeCutsShortTheCallUnderWayAndTheOnesWaitingBehindIt() throws Exception {
        firecracker = FirecrackerProcess.start();
        api = FirecrackerApi.overUnixSocket(firecracker.socket());
        api.describeInstance(); // the connection is open
        firecracker.stop();

        CompletableFuture<Throwable> underWay = callInBackground("under-way", api::getMachineConfiguration);
        awaitWaitingForAnAnswer(callers.getFirst());
        CompletableFuture<Throwable> queued = callInBackground("queued", api::describeInstance);
        awaitWaitingForAnAnswer(callers.getLast());
        assertThat(underWay).as("a call to a stopped Firecracker").isNotDone();

        String reason = "the test killed the machine";
        long t0 = System.nanoTime();
        api.close(reason);
        Duration closing = Duration.ofNanos(System.nanoTime() - t0);
        assertThat(closing).as("how long close() took").isLessThan(PROMPTLY);

        for (var call : List.of(underWay, queued)) {
            assertThat(outcome(call)).isInstanceOfSatisfying(MachineClosedException.class, e -> {
                assertThat(e.getMessage()).endsWith(reason).doesNotContainIgnoringCase("broken pipe");
            });
        }
        assertLaterCallsFailAtOnce(reason);
    }

    @Test
    void closeWithoutAReasonSaysTheClientWasClosed() throws Exception {
        firecracker = FirecrackerProcess.start();
        api = FirecrackerApi.overUnixSocket(firecracker.socket());
        firecracker.stop(); // before the first call: this one is still opening its connection or waiting for an answer

        CompletableFuture<Throwable> underWay = callInBackground("under-way", api::describeInstance);
        awaitWaitingForAnAnswer(callers.getFirst());
        api.close();

        assertThat(outcome(underWay)).isInstanceOf(MachineClosedException.class).hasMessageEndingWith("the API client was closed");
        assertLaterCallsFailAtOnce("the API client was closed");
    }

    @Test
    void aCallCutShortByFirecrackersDeathSaysSoBeforeTheClientIsClosed() throws Exception {
        firecracker = FirecrackerProcess.start();
        String death = "Firecracker exited: killed by signal 9 (SIGKILL)";
        // As the machine core does: the socket closes just before the exit is seen, so the exit is given a moment.
        api = FirecrackerApi.overUnixSocket(firecracker.socket()).vmmState(() -> firecracker.exitsWithin(Duration.ofSeconds(1)) ? death : null);
        api.describeInstance();
        firecracker.stop();
        CompletableFuture<Throwable> underWay = callInBackground("under-way", api::describeInstance);
        awaitWaitingForAnAnswer(callers.getFirst());
        firecracker.kill(); // dies with the call under way, never answering; the client is not closed: the caller notices first

        assertThat(outcome(underWay)).isInstanceOf(MachineClosedException.class)
                .hasMessage("GET / got no answer: " + death);
    }

    /** A client with a long timeout (a snapshot's) shares the connection: closing the machine's client ends its call too. */
    @Test
    void closeCutsShortACallOfAClientWithALongerTimeout() throws Exception {
        firecracker = FirecrackerProcess.start();
        api = FirecrackerApi.overUnixSocket(firecracker.socket());
        FirecrackerApi patient = api.withTimeout(Duration.ofMinutes(10));
        assertThat(patient.timeout()).isEqualTo(Duration.ofMinutes(10));
        assertThat(api.timeout()).isEqualTo(FirecrackerApi.DEFAULT_TIMEOUT);
        patient.describeInstance();
        firecracker.stop();
        CompletableFuture<Throwable> underWay = callInBackground("patient", patient::getMachineConfiguration);
        awaitWaitingForAnAnswer(callers.getFirst());
        api.close("the machine is stopping");
        assertThat(outcome(underWay)).isInstanceOf(MachineClosedException.class).hasMessageEndingWith("the machine is stopping");
    }

    @Test
    void onlyTheFirstCloseCounts() {
        firecracker = FirecrackerProcess.start();
        api = FirecrackerApi.overUnixSocket(firecracker.socket());
        api.describeInstance();
        api.close("Firecracker exited with status 1");
        api.close("a later reason");
        api.close();
        assertLaterCallsFailAtOnce("Firecracker exited with status 1");
    }

    private void assertLaterCallsFailAtOnce(String reason) {
        long t0 = System.nanoTime();
        for (Runnable call : List.<Runnable>of(api::describeInstance, () -> api.putMmds(ConnectionRecoveryTest.mmdsOfSize(100)),
                () -> api.request("GET", "/version", null))) {
            try {
                call.run();
                fail("a call after close() returned normally");
            } catch (MachineClosedException e) {
                assertThat(e.getMessage()).startsWith("cannot send ").endsWith(reason);
            }
        }
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).as("three calls after close()").isLessThan(PROMPTLY);
    }

    /** Runs {@code call} on a new thread; the future has what it threw (null when it returned). */
    private CompletableFuture<Throwable> callInBackground(String name, Supplier<?> call) {
        CompletableFuture<Throwable> outcome = new CompletableFuture<>();
        callers.add(Thread.ofPlatform().name("api-call-" + name).start(() -> {
            try {
                call.get();
                outcome.complete(null);
            } catch (Throwable t) {
                outcome.complete(t);
            }
        }));
        return outcome;
    }

    private static Throwable outcome(CompletableFuture<Throwable> call) throws Exception {
        try {
            Throwable thrown = call.get(PROMPTLY.toMillis(), TimeUnit.MILLISECONDS);
            assertThat(thrown).as("what the call threw after close()").isNotNull();
            return thrown;
        } catch (TimeoutException e) {
            throw new AssertionError("the call was still running " + PROMPTLY.toMillis() + " ms after close()");
        }
    }

    /** Waits until {@code caller} is parked inside the transport, i.e. waiting for its turn or for an answer. */
    private static void awaitWaitingForAnAnswer(Thread caller) throws InterruptedException {
        Deadline deadline = Deadline.after(PROMPTLY);
        while (true) {
            StackTraceElement[] stack = caller.getStackTrace();
            boolean inTransport = Arrays.stream(stack).anyMatch(f -> f.getClassName().equals(UnixSocketTransport.class.getName()));
            Thread.State state = caller.getState();
            if (inTransport && (state == Thread.State.TIMED_WAITING || state == Thread.State.WAITING)) return;
            if (deadline.expired() || !caller.isAlive()) {
                throw new AssertionError(caller.getName() + " did not come to wait inside the transport within "
                        + PROMPTLY.toMillis() + " ms; it is " + state + " at " + Arrays.toString(stack));
            }
            Thread.sleep(5); // polling another thread's state: there is nothing to block on
        }
    }
}
