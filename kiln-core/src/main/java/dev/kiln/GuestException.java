package dev.kiln;

/** The guest agent answered a command with an error, or stopped answering. */
public class GuestException extends KilnException {
    private final String errorClass;

    public GuestException(String message) {
        this(message, null, null);
    }

    public GuestException(String message, String errorClass, Throwable cause) {
        super(message, cause);
        this.errorClass = errorClass;
    }

    /** The agent's error class (for example {@code GenericError}), or null when the failure was local. */
    public String errorClass() { return errorClass; }
}
