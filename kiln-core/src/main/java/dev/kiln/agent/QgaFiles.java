package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.GuestException;
import dev.kiln.KilnException;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.Arrays;
import java.util.Base64;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Moves files through the agent: {@code guest-file-open}, chunks of {@code guest-file-write} or
 * {@code guest-file-read} as base64, and {@code guest-file-close}, which always runs, even after a failure.
 */
final class QgaFiles {
    /** Raw bytes per guest-file-write: a 1.4 MB message, parsed by the agent's JSON lexer byte by byte. */
    static final int WRITE_CHUNK = 1 << 20;
    /** Bytes per guest-file-read; the agent allocates the whole count up front (it accepts up to 48 MiB). */
    static final int READ_CHUNK = 4 << 20;
    /** Time a guest file handle gets to close after the copy's deadline passed. */
    private static final Duration CLOSE_BUDGET = Duration.ofSeconds(5);

    private final QgaSession session;
    private final String name;

    QgaFiles(QgaSession session) {
        this.session = session;
        this.name = session.name();
    }

    /** Copies a host file into the guest (created or truncated) within {@code timeout} for the whole copy. */
    void copyIn(Path hostFile, String guestPath, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        String what = " for " + guestPath;
        InputStream in;
        try {
            in = Files.newInputStream(hostFile);
        } catch (IOException e) {
            throw new KilnException("cannot read " + hostFile + " to copy it into " + name + ": " + e, e);
        }
        try (in) {
            long handle = openFile(guestPath, "wb", deadline);
            RuntimeException failure = null;
            try {
                byte[] buf = new byte[WRITE_CHUNK];
                Base64.Encoder b64 = Base64.getEncoder();
                int n;
                while ((n = in.readNBytes(buf, 0, buf.length)) > 0) {
                    int off = 0;
                    while (off < n) {
                        byte[] part = off == 0 && n == buf.length ? buf : Arrays.copyOfRange(buf, off, n);
                        ObjectNode args = JsonFramer.JSON.createObjectNode().put("handle", handle)
                                .put("buf-b64", b64.encodeToString(part)).put("count", part.length);
                        long written = session.request("guest-file-write", args, deadline, what).path("count").asLong();
                        if (written <= 0) {
                            throw new GuestException("guest agent of " + name + " wrote nothing to " + guestPath);
                        }
                        off += (int) written;
                    }
                }
            } catch (IOException e) {
                failure = new KilnException("cannot read " + hostFile + " to copy it into " + name + ": " + e, e);
            } catch (RuntimeException e) {
                failure = e;
            } finally {
                failure = closeFile(handle, guestPath, deadline, failure);
            }
            if (failure != null) throw failure;
        } catch (IOException e) {
            throw new KilnException("cannot close " + hostFile + ": " + e, e);
        }
    }

    /**
     * Copies a guest file to the host within {@code timeout} for the whole copy. The bytes land in a
     * temporary file beside {@code hostFile}, renamed over it only when the copy is complete.
     */
    void copyOut(String guestPath, Path hostFile, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        String what = " for " + guestPath;
        Path target = hostFile.toAbsolutePath();
        Path temp = target.resolveSibling("." + target.getFileName() + "."
                + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".part");
        boolean done = false;
        try (OutputStream out = Files.newOutputStream(temp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            long handle = openFile(guestPath, "rb", deadline);
            RuntimeException failure = null;
            try {
                ObjectNode args = JsonFramer.JSON.createObjectNode().put("handle", handle).put("count", READ_CHUNK);
                Base64.Decoder b64 = Base64.getDecoder();
                while (true) {
                    JsonNode ret = session.request("guest-file-read", args, deadline, what);
                    out.write(b64.decode(ret.path("buf-b64").asText("")));
                    if (ret.path("eof").asBoolean()) break;
                }
            } catch (IOException e) {
                failure = new KilnException("cannot write " + temp + " while copying " + guestPath + " out of " + name
                        + ": " + e, e);
            } catch (RuntimeException e) {
                failure = e;
            } finally {
                failure = closeFile(handle, guestPath, deadline, failure);
            }
            if (failure != null) throw failure;
            done = true;
        } catch (IOException e) {
            throw new KilnException("cannot write " + temp + " while copying " + guestPath + " out of " + name + ": " + e, e);
        } finally {
            if (!done) deleteQuietly(temp);
        }
        try {
            Files.move(temp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            deleteQuietly(temp);
            throw new KilnException("cannot move " + temp + " to " + target + ": " + e, e);
        }
    }

    private static void deleteQuietly(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException ignored) {
            // best effort; the failure being reported matters more
        }
    }

    private long openFile(String guestPath, String mode, Deadline deadline) {
        ObjectNode args = JsonFramer.JSON.createObjectNode().put("path", guestPath).put("mode", mode);
        JsonNode handle = session.request("guest-file-open", args, deadline, " for " + guestPath);
        if (!handle.canConvertToLong()) {
            throw new GuestException("guest agent of " + name + " answered guest-file-open for " + guestPath
                    + " without a handle: " + handle);
        }
        return handle.asLong();
    }

    /** Closes a guest file handle, even after the copy's deadline passed; reports over an earlier failure. */
    private RuntimeException closeFile(long handle, String guestPath, Deadline deadline, RuntimeException failure) {
        Deadline closeBy = deadline.remainingNanos() > CLOSE_BUDGET.toNanos() ? deadline : Deadline.after(CLOSE_BUDGET);
        try {
            session.request("guest-file-close", JsonFramer.JSON.createObjectNode().put("handle", handle), closeBy,
                    " for " + guestPath);
            return failure;
        } catch (RuntimeException e) {
            if (failure == null) return e;
            failure.addSuppressed(e);
            return failure;
        }
    }
}
