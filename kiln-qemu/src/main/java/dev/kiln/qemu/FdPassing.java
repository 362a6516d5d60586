package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.KilnException;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.os.UnixSocket;

import java.nio.file.Path;

/**
 * Files handed to a running QEMU over SCM_RIGHTS, on a QMP monitor kept for that alone ({@code getfd},
 * {@code add-fd}): QEMU looks fd names up per monitor, so the command that uses a passed fd goes on the same one.
 */
final class FdPassing {
    private final Path monitor;

    FdPassing(Path monitor) {
        this.monitor = monitor;
    }

    /** Opens {@code file}, passes it as {@code fdName}, then runs {@code thenCommand} (may be null) on the same monitor. */
    JsonNode passFile(Path file, boolean writable, String fdName, String thenCommand, ObjectNode thenArguments) {
        try (Fd fd = Posix.open(file, writable); Fd sock = connect()) {
            FdMonitor mon = FdMonitor.open(sock);
            mon.executeWithFd("getfd", QmpArgs.of("fdname", fdName), fd);
            return thenCommand == null ? null : mon.execute(thenCommand, thenArguments);
        }
    }

    /** Opens {@code file} and adds it to fd set {@code fdsetId}; returns QEMU's answer ({@code fdset-id}, {@code fd}). */
    JsonNode addFileToSet(Path file, boolean writable, int fdsetId, String opaque) {
        try (Fd fd = Posix.open(file, writable); Fd sock = connect()) {
            FdMonitor mon = FdMonitor.open(sock);
            ObjectNode args = QmpArgs.of("fdset-id", fdsetId);
            if (opaque != null) args.put("opaque", opaque);
            return mon.executeWithFd("add-fd", args, fd);
        }
    }

    private Fd connect() {
        if (monitor == null) throw new KilnException("fd passing is off: build the machine with fdPassing(true)");
        return UnixSocket.connect(monitor);
    }
}
