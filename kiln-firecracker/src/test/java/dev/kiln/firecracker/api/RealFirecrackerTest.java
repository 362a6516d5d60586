package dev.kiln.firecracker.api;

import org.junit.jupiter.api.AfterEach;

import java.time.Duration;

/** A test against a Firecracker it starts itself and a transport to it; both are closed, and no client thread left. */
abstract class RealFirecrackerTest {
    /** Each ordinary call's timeout: a call that would stall fails instead of waiting out the default 30 s. */
    static final Duration CALL_TIMEOUT = Duration.ofSeconds(5);

    FirecrackerProcess firecracker;
    UnixSocketTransport transport;

    @AfterEach
    void cleanUp() {
        try {
            if (transport != null) transport.close();
        } finally {
            if (firecracker != null) firecracker.close();
        }
        ApiThreads.assertNoneLeft();
    }
}
