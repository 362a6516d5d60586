package dev.kiln.firecracker.api;

import dev.kiln.KilnException;
import dev.kiln.Text;

import java.nio.charset.StandardCharsets;

/**
 * Firecracker answered a request with an error status. Carries the request, the HTTP status and the
 * {@code fault_message}. Firecracker's answer to an unsupported HTTP method is not valid JSON: then
 * {@link #faultMessage()} is null and {@link #rawBody()} holds what came.
 */
public class FirecrackerApiException extends KilnException {
    private static final String NO_SUCH_ENDPOINT = "Invalid request method and/or path";
    private static final String UNRECOGNIZED_PATH = "Unrecognized ";

    private final String method;
    private final String path;
    private final int status;
    private final String faultMessage;
    private final String rawBody;

    public FirecrackerApiException(String method, String path, int status, String faultMessage, byte[] rawBody) {
        super(describe(method, path, status, faultMessage, rawBody));
        this.method = method;
        this.path = path;
        this.status = status;
        this.faultMessage = faultMessage;
        this.rawBody = new String(rawBody, StandardCharsets.UTF_8);
    }

    private static String describe(String method, String path, int status, String fault, byte[] body) {
        String head = "Firecracker refused " + method + " " + path + " with HTTP " + status;
        if (fault != null) {
            String hint = isMissingEndpoint(fault)
                    ? " (this Firecracker does not have this endpoint: it is newer than the binary; see GET /version)" : "";
            return head + ": " + fault + hint;
        }
        String raw = new String(body, StandardCharsets.UTF_8);
        return head + " and a body that is not Firecracker's JSON error object"
                + (raw.isBlank() ? " (empty)" : ": " + Text.tail(raw.strip(), 500));
    }

    private static boolean isMissingEndpoint(String fault) {
        return fault.startsWith(NO_SUCH_ENDPOINT) || fault.startsWith(UNRECOGNIZED_PATH);
    }

    public String method() { return method; }

    public String path() { return path; }

    public int status() { return status; }

    /** Firecracker's {@code fault_message}, or null when the body was not the JSON error object. */
    public String faultMessage() { return faultMessage; }

    public String rawBody() { return rawBody; }

    /** True when this Firecracker does not know the method and path: an endpoint newer than the binary. */
    public boolean isMissingEndpoint() {
        return faultMessage != null && isMissingEndpoint(faultMessage);
    }
}
