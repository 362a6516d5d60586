package dev.kiln;

/** A command in the guest ended otherwise than expected: it carries the command's whole result. */
public class CommandFailedException extends GuestException {
    private final ExecResult result;

    public CommandFailedException(String message, ExecResult result) {
        super(message);
        this.result = result;
    }

    /** The command, its exit code, stdout and stderr. */
    public ExecResult result() { return result; }
}
