package dev.kiln.firecracker.api;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
import dev.kiln.firecracker.api.model.Drive;
import dev.kiln.firecracker.api.model.LoggerConfig;
import dev.kiln.firecracker.api.model.MetricsConfig;
import dev.kiln.firecracker.api.model.PartialDrive;
import org.junit.jupiter.api.Test;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.List;
import java.util.Map;

import static dev.kiln.firecracker.api.ConnectionRecoveryTest.mmdsOfSize;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Calls the client refuses itself, before anything reaches the transport (no Firecracker needed). */
class RefusedBeforeSendingTest {
    private static final String LOG_FIFO_REASON =
            "it would move Firecracker's log off Kiln's FIFO, blinding awaitLogMessage and the failure evidence";

    private final RecordingTransport transport = RecordingTransport.noContent();
    private final FirecrackerApi api = new FirecrackerApi(transport);

    @Test
    void aRefusedOperationThrowsTheReasonAndSendsNothing() {
        api.refuse("putLogger", LOG_FIFO_REASON);
        LoggerConfig logger = LoggerConfig.of("/tmp/fc.log", LoggerConfig.Level.Info);
        assertThatThrownBy(() -> api.putLogger(logger)).isExactlyInstanceOf(KilnException.class)
                .hasMessage("putLogger (PUT /logger) is refused: " + LOG_FIFO_REASON);
        // The untyped way to the same endpoint is refused as well.
        assertThatThrownBy(() -> api.request("PUT", "/logger", JsonNodeFactory.instance.objectNode().put("log_path", "/tmp/x")))
                .hasMessage("putLogger (PUT /logger) is refused: " + LOG_FIFO_REASON);
        assertThat(transport.sent()).isEmpty();

        // Other operations, and other methods on the same path, still go through.
        api.putMetrics(MetricsConfig.of("/tmp/fc.metrics"));
        api.request("GET", "/logger", null);
        assertThat(transport.sent()).extracting(s -> s.method() + " " + s.path()).containsExactly("PUT /metrics", "GET /logger");
    }

    @Test
    void aRefusalOfAnOperationWithAPathParameterCoversEveryId() {
        api.refuse("putGuestDriveByID", "drives are fixed once the machine is configured");
        assertThatThrownBy(() -> api.putGuestDriveByID(Drive.of("rootfs", "/r.ext4", true, false)))
                .hasMessage("putGuestDriveByID (PUT /drives/rootfs) is refused: drives are fixed once the machine is configured");
        assertThatThrownBy(() -> api.request("PUT", "/drives/scratch", JsonNodeFactory.instance.objectNode()))
                .hasMessageStartingWith("putGuestDriveByID (PUT /drives/scratch) is refused");
        api.patchGuestDriveByID(new PartialDrive("rootfs", "/other.ext4", null));
        assertThat(transport.sent()).extracting(s -> s.method() + " " + s.path()).containsExactly("PATCH /drives/rootfs");
    }

    @Test
    void everyOperationCanBeRefusedByItsName() throws Exception {
        // Each client method is found by the name the spec gives it: a refusal by that name stops that method.
        Map<Method, ApiOperation> operations = ApiContractTest.clientOperations();
        assertThat(operations).hasSize(38);
        for (var entry : operations.entrySet()) {
            FirecrackerApi refusing = new FirecrackerApi(transport).refuse(entry.getValue().id(), "test");
            Method m = entry.getKey();
            Object[] args = m.getParameterCount() == 0 ? new Object[0]
                    : new Object[] {m.getParameterTypes()[0] == JsonNode.class ? Samples.mmdsContents() : Samples.full(m.getParameterTypes()[0])};
            try {
                m.invoke(refusing, args);
                throw new AssertionError(entry.getValue().id() + " was not refused");
            } catch (InvocationTargetException e) {
                assertThat(e.getCause()).as(entry.getValue().id()).hasMessageStartingWith(entry.getValue().id() + " (")
                        .hasMessageEndingWith(" is refused: test");
            }
        }
        assertThat(transport.sent()).isEmpty();
    }

    @Test
    void aRefusalNeedsAKnownOperationAndAReason() {
        assertThatThrownBy(() -> api.refuse("putLog", "x")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("no operation 'putLog'").hasMessageContaining("putLogger");
        assertThatThrownBy(() -> api.refuse("putLogger", " ")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("reason");
        assertThatThrownBy(() -> api.refuse(null, "x")).isInstanceOf(NullPointerException.class);
    }

    @Test
    void aBodyOverTheLimitIsRefusedWithWhatToDo() {
        assertThat(api.maxPayloadBytes()).isEqualTo(FirecrackerApi.DEFAULT_MAX_PAYLOAD_BYTES).isEqualTo(51_200);
        api.putMmds(mmdsOfSize(51_200));
        assertThat(transport.sent()).hasSize(1);
        assertThat(transport.last().body()).hasSize(51_200);

        assertThatThrownBy(() -> api.putMmds(mmdsOfSize(51_201))).isExactlyInstanceOf(KilnException.class).hasMessage(
                "putMmds (PUT /mmds) has a 51201-byte body, over the 51200-byte limit of Firecracker's API (Firecracker would"
                        + " refuse it with HTTP 400); nothing was sent. To allow larger bodies, start Firecracker with"
                        + " --http-api-max-payload-size=<bytes> and give this client the same limit with maxPayloadBytes(<bytes>)"
                        + " (Firecracker's default is 51200)");
        assertThatThrownBy(() -> api.request("PATCH", "/mmds", mmdsOfSize(60_000)))
                .hasMessageStartingWith("patchMmds (PATCH /mmds) has a 60000-byte body");
        assertThatThrownBy(() -> api.request("PUT", "/something-newer", mmdsOfSize(60_000)))
                .hasMessageStartingWith("(PUT /something-newer) has a 60000-byte body");
        assertThat(transport.sent()).hasSize(1);

        api.maxPayloadBytes(60_000);
        api.request("PATCH", "/mmds", mmdsOfSize(60_000));
        assertThatThrownBy(() -> api.putMmds(mmdsOfSize(60_001)))
                .hasMessageContaining("over the 60000-byte limit").hasMessageNotContaining("default");
        assertThat(transport.sent()).hasSize(2);

        assertThatThrownBy(() -> api.maxPayloadBytes(0)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("positive");
    }

    @Test
    void aClosedClientSendsNothing() {
        api.describeInstance();
        api.close("Firecracker exited with status 1");
        for (Runnable call : List.<Runnable>of(api::describeInstance, api::instanceStart, () -> api.request("GET", "/version", null))) {
            assertThatThrownBy(call::run).isExactlyInstanceOf(MachineClosedException.class)
                    .hasMessageStartingWith("cannot send ").hasMessageEndingWith(": Firecracker exited with status 1");
        }
        assertThat(transport.sent()).hasSize(1);
    }
}
