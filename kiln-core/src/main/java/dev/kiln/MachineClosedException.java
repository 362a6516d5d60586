package dev.kiln;

/**
 * A call reached a machine that is closed or closing (by {@code close()}, {@code kill()}, a shutdown or the VMM's
 * own exit), or was under way when that happened. Its message says what became of the machine.
 */
public class MachineClosedException extends KilnException {
    public MachineClosedException(String message) {
        super(message);
    }

    public MachineClosedException(String message, Throwable cause) {
        super(message, cause);
    }
}
