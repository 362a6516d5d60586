package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.KilnException;

/** QEMU answered a QMP command with an error, or the QMP connection failed under a command. */
public class QmpException extends KilnException {
    private final String command;
    private final String errorClass;
    private final JsonNode response;

    public QmpException(String command, String errorClass, String description, JsonNode response) {
        super("QMP command '" + command + "' failed: " + errorClass + ": " + description);
        this.command = command;
        this.errorClass = errorClass;
        this.response = response;
    }

    public QmpException(String command, String message, Throwable cause) {
        super("QMP command '" + command + "' failed: " + message, cause);
        this.command = command;
        this.errorClass = null;
        this.response = null;
    }

    public String command() { return command; }

    /** QEMU's error class (e.g. {@code GenericError}, {@code CommandNotFound}), or null for a local failure. */
    public String errorClass() { return errorClass; }

    /** The whole error response, or null. */
    public JsonNode response() { return response; }
}
