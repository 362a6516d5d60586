package dev.kiln.junit;

import java.nio.file.Path;

/**
 * Where Kiln wrote what a failed test's machines left behind: added to the failure as a suppressed exception, so the
 * failure keeps its own type, message and stack (an IDE's expected/actual diff included) and the report still
 * names the directory.
 */
public final class KilnEvidence extends RuntimeException {
    private final transient Path directory;

    KilnEvidence(Path directory) {
        super("Kiln evidence: " + directory, null, false, false);
        this.directory = directory;
    }

    /** The directory with the failure's stack trace and a subdirectory per machine. */
    public Path directory() {
        return directory;
    }
}
