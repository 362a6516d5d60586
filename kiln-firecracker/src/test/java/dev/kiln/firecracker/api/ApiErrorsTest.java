package dev.kiln.firecracker.api;

import dev.kiln.KilnException;
import dev.kiln.firecracker.api.model.Drive;
import org.junit.jupiter.api.Test;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** How the client turns Firecracker's answers into results and errors (answers scripted: no binary needed). */
class ApiErrorsTest {
    private static FirecrackerApi answering(int status, String body) {
        return new FirecrackerApi(new RecordingTransport(s -> RecordingTransport.json(status, body)));
    }

    @Test
    void aFaultMessageBecomesTheException() {
        assertThatThrownBy(() -> answering(400, "{\"fault_message\":\"Invalid block device\"}").putGuestDriveByID(Drive.of("a", "/x", true, false)))
                .isInstanceOfSatisfying(FirecrackerApiException.class, e -> {
                    assertThat(e.status()).isEqualTo(400);
                    assertThat(e.faultMessage()).isEqualTo("Invalid block device");
                    assertThat(e.getMessage()).isEqualTo("Firecracker refused PUT /drives/a with HTTP 400: Invalid block device");
                });
    }

    @Test
    void aBodyThatIsNotJsonIsKeptRaw() {
        String notJson = "{ \"error\": \"Invalid HTTP Method: Unsupported HTTP method.\nAll previous unanswered requests will be dropped.\" }";
        assertThatThrownBy(() -> answering(400, notJson).describeInstance()).isInstanceOfSatisfying(FirecrackerApiException.class, e -> {
            assertThat(e.faultMessage()).isNull();
            assertThat(e.rawBody()).isEqualTo(notJson);
            assertThat(e.getMessage()).contains("not Firecracker's JSON error object", "Unsupported HTTP method");
        });
        assertThatThrownBy(() -> answering(500, "").describeInstance()).hasMessageContaining("HTTP 500").hasMessageContaining("(empty)");
    }

    @Test
    void aMissingEndpointSaysTheBinaryIsOlder() {
        assertThatThrownBy(() -> answering(400, "{\"fault_message\":\"Invalid request method and/or path: PUT serial.\"}")
                .putSerialDevice(new dev.kiln.firecracker.api.model.SerialDevice("/s", null)))
                .isInstanceOfSatisfying(FirecrackerApiException.class, e -> {
                    assertThat(e.isMissingEndpoint()).isTrue();
                    assertThat(e.getMessage()).contains("does not have this endpoint");
                });
    }

    @Test
    void anAnswerOfTheWrongShapeSaysWhat() {
        assertThatThrownBy(() -> answering(200, "[1,2]").describeInstance()).isInstanceOf(KilnException.class)
                .hasMessageContaining("cannot read Firecracker's answer to GET / as InstanceInfo");
    }

    @Test
    void unknownFieldsFromANewerFirecrackerAreIgnored() {
        var info = answering(200, "{\"id\":\"a\",\"state\":\"Paused\",\"vmm_version\":\"9.9\",\"app_name\":\"Firecracker\",\"new\":1}").describeInstance();
        assertThat(info.vmmVersion()).isEqualTo("9.9");
    }

    @Test
    void badInputIsRefusedBeforeSending() {
        RecordingTransport t = RecordingTransport.noContent();
        FirecrackerApi api = new FirecrackerApi(t);
        assertThatThrownBy(() -> api.putGuestDriveByID(Drive.of("../x", "/x", true, false))).hasMessageContaining("may only contain");
        assertThatThrownBy(() -> api.putGuestDriveByID(Drive.of(null, "/x", true, false))).hasMessageContaining("driveId must be set");
        assertThatThrownBy(() -> api.putMmds(com.fasterxml.jackson.databind.node.JsonNodeFactory.instance.arrayNode()))
                .hasMessageContaining("must be a JSON object");
        assertThatThrownBy(() -> api.request("GET", "no-slash", null)).hasMessageContaining("must start with '/'");
        assertThatThrownBy(() -> api.timeout(Duration.ZERO)).hasMessageContaining("positive");
        assertThat(t.sent()).isEmpty();
    }

    @Test
    void nullsAreLeftOut() {
        RecordingTransport t = RecordingTransport.noContent();
        new FirecrackerApi(t).putGuestDriveByID(Drive.of("rootfs", "/r.ext4", true, false));
        assertThat(t.last().body()).isEqualTo("{\"drive_id\":\"rootfs\",\"is_root_device\":true,\"is_read_only\":false,\"path_on_host\":\"/r.ext4\"}");
    }
}
