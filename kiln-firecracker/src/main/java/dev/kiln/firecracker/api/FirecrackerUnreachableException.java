package dev.kiln.firecracker.api;

import dev.kiln.KilnException;

/** No answer came from Firecracker's API: the socket is missing, the connection broke, or it timed out. */
public class FirecrackerUnreachableException extends KilnException {
    public FirecrackerUnreachableException(String message, Throwable cause) {
        super(message, cause);
    }
}
