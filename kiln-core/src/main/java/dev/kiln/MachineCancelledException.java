package dev.kiln;

/**
 * The machine was cancelled (its cancel token fired or its time limit passed) and killed: not a failure of
 * the guest or the VMM. The cause, if any, is what the cancellation interrupted.
 */
public class MachineCancelledException extends KilnException {
    public MachineCancelledException(String message, Throwable cause) {
        super(message, cause);
    }
}
