package dev.kiln;

/**
 * A machine cannot be saved: its VMM has no snapshots, or refuses to save this machine (a device that cannot be
 * migrated, say — QEMU's words name it). The machine itself runs on.
 */
public class SnapshotException extends KilnException {
    public SnapshotException(String message) {
        super(message);
    }

    public SnapshotException(String message, Throwable cause) {
        super(message, cause);
    }
}
