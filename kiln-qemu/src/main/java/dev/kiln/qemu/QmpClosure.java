package dev.kiln.qemu;

import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;

/**
 * Why a QMP connection closed, and who closed it: Kiln ({@link Qmp#close(String)}), or QEMU's end (end of
 * stream, garbage, an I/O error, a command QEMU would not read), which is a lost connection.
 *
 * <p>The difference shows in the failures: what Kiln closed fails with {@link MachineClosedException}, a
 * caller's normal lot when a machine is being closed; a lost connection fails as a QMP failure.
 */
record QmpClosure(String reason, boolean byKiln) {
    static QmpClosure byKiln(String reason) {
        return new QmpClosure(reason, true);
    }

    static QmpClosure lost(String reason) {
        return new QmpClosure(reason, false);
    }

    /** For a command that was in flight when the connection closed, or came later. */
    KilnException commandFailed(String peer, String command, Throwable cause) {
        if (byKiln) {
            return new MachineClosedException("QMP command '" + command + "' to " + peer
                    + " failed: Kiln closed the QMP connection (" + reason + ")", cause);
        }
        return new QmpException(command, "QMP connection closed: " + reason, cause);
    }

    /** For a wait (an event, the greeting) under way when the connection closed, or begun later. */
    KilnException waitFailed(String peer, String awaited) {
        if (byKiln) {
            return new MachineClosedException("Kiln closed the QMP connection to " + peer + " (" + reason
                    + ") while waiting for " + awaited);
        }
        return new KilnException("QMP connection to " + peer + " closed (" + reason + ") while waiting for " + awaited);
    }
}
