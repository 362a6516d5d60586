package dev.kiln.firecracker;

import dev.kiln.KilnException;

/** An opt-in check failed when the machine stopped (API call durations, memory overhead, unexpected signal). */
public class FirecrackerCheckException extends KilnException {
    public FirecrackerCheckException(String message) {
        super(message);
    }
}
