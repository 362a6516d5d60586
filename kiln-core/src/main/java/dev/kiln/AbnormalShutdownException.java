package dev.kiln;

/** A graceful shutdown was asked for but did not happen; the VMM was killed instead and cleanup ran. */
public class AbnormalShutdownException extends KilnException {
    public AbnormalShutdownException(String message, Throwable cause) {
        super(message, cause);
    }
}
