package dev.kiln.firecracker.api;

import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.kiln.firecracker.api.ConnectionRecoveryTest.bytes;
import static dev.kiln.firecracker.api.ConnectionRecoveryTest.mmdsOfSize;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Where Firecracker's payload limit lies, measured on the real binary, and that the client's limit is the same
 * one: Firecracker takes a body of exactly {@code --http-api-max-payload-size} bytes (the request's headers do not
 * count) and answers one byte more with 400; the client refuses that one byte more before sending anything.
 */
class PayloadLimitTest extends RealFirecrackerTest {

    @Test
    void theDefaultLimitIsFirecrackersDefault() {
        firecracker = FirecrackerProcess.start();
        transport = new UnixSocketTransport(firecracker.socket());
        assertFirecrackersLimitIs(FirecrackerApi.DEFAULT_MAX_PAYLOAD_BYTES);

        Counting counting = new Counting(transport);
        FirecrackerApi api = new FirecrackerApi(counting).timeout(CALL_TIMEOUT);
        assertThat(api.maxPayloadBytes()).isEqualTo(51_200);
        assertTheClientHoldsTheLimit(api, counting, 51_200);
    }

    @Test
    void aRaisedLimitIsKeptByBoth() {
        firecracker = FirecrackerProcess.start("--http-api-max-payload-size", "100000");
        transport = new UnixSocketTransport(firecracker.socket());
        assertFirecrackersLimitIs(100_000);

        Counting counting = new Counting(transport);
        FirecrackerApi api = new FirecrackerApi(counting).timeout(CALL_TIMEOUT).maxPayloadBytes(100_000);
        assertTheClientHoldsTheLimit(api, counting, 100_000);
    }

    @Test
    void aLoweredLimitIsKeptByBoth() {
        firecracker = FirecrackerProcess.start("--http-api-max-payload-size", "1000");
        transport = new UnixSocketTransport(firecracker.socket());
        assertFirecrackersLimitIs(1000);

        Counting counting = new Counting(transport);
        FirecrackerApi api = new FirecrackerApi(counting).timeout(CALL_TIMEOUT).maxPayloadBytes(1000);
        assertTheClientHoldsTheLimit(api, counting, 1000);
    }

    /** Raw requests, past the client's check: a body of {@code limit} bytes is taken, one of limit + 1 is not. */
    private void assertFirecrackersLimitIs(int limit) {
        ApiTransport.Response atLimit = transport.exchange("PUT", "/mmds", bytes(mmdsOfSize(limit)), CALL_TIMEOUT);
        assertThat(atLimit.status()).as("Firecracker's answer to a body of %d bytes: %s", limit,
                new String(atLimit.body(), StandardCharsets.UTF_8)).isEqualTo(204);
        ApiTransport.Response over = transport.exchange("PUT", "/mmds", bytes(mmdsOfSize(limit + 1)), CALL_TIMEOUT);
        assertThat(over.status()).as("Firecracker's answer to a body of %d bytes", limit + 1).isEqualTo(400);
        assertThat(new String(over.body(), StandardCharsets.UTF_8))
                .contains("Request payload with size " + (limit + 1) + " is larger than the limit of " + limit);
    }

    private static void assertTheClientHoldsTheLimit(FirecrackerApi api, Counting counting, int limit) {
        var atLimit = mmdsOfSize(limit);
        api.putMmds(atLimit);
        assertThat(api.getMmds()).as("MMDS after a put of exactly %d bytes", limit).isEqualTo(atLimit);

        int sent = counting.exchanges.get();
        assertThatThrownBy(() -> api.putMmds(mmdsOfSize(limit + 1))).isExactlyInstanceOf(KilnException.class)
                .hasMessageContaining("putMmds (PUT /mmds)")
                .hasMessageContaining("a " + (limit + 1) + "-byte body")
                .hasMessageContaining("the " + limit + "-byte limit")
                .hasMessageContaining("--http-api-max-payload-size")
                .hasMessageContaining("maxPayloadBytes(");
        assertThat(counting.exchanges.get()).as("requests sent for the refused body").isEqualTo(sent);
        assertThat(api.getMmds()).as("MMDS after the refused put").isEqualTo(atLimit);
    }

    /** Passes exchanges on to the real transport, counting them. */
    private record Counting(ApiTransport delegate, AtomicInteger exchanges) implements ApiTransport {
        Counting(ApiTransport delegate) {
            this(delegate, new AtomicInteger());
        }

        @Override
        public Response exchange(String method, String path, byte[] jsonBody, Duration timeout) {
            exchanges.incrementAndGet();
            return delegate.exchange(method, path, jsonBody, timeout);
        }

        @Override
        public String describe() {
            return delegate.describe();
        }

        @Override
        public void close() {
            delegate.close();
        }
    }
}
