package dev.kiln.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The Python peer ({@code kiln-bench/peers/qemu_machine_peer.py --serve}): QEMU's own QEMUMachine and
 * qemu.qmp, and a bare blocking client, answering one JSON request a line. One long-lived process, so its
 * runs interleave with Kiln's and its interpreter is as warm as Kiln's JVM.
 */
final class PythonPeer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String EOF = "\u0000eof";

    private final Process process;
    private final OutputStream in;
    private final LinkedBlockingQueue<String> lines = new LinkedBlockingQueue<>();

    PythonPeer(Path script, Path qemuPython, ObjectNode config, Path log) throws IOException {
        process = new ProcessBuilder(List.of("python3", script.toString(), "--python", qemuPython.toString(),
                "--serve", "--config", config.toString()))
                .redirectError(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        in = process.getOutputStream();
        Thread.ofVirtual().name("kiln-bench-python-peer").start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) lines.add(line);
            } catch (IOException ignored) {
                // the peer went away: the request that waits says so
            } finally {
                lines.add(EOF);
            }
        });
    }

    /** Sends one request and waits for its answer; an answer with "error" becomes an exception. */
    JsonNode request(ObjectNode req, Duration timeout) throws IOException, InterruptedException {
        in.write((req + "\n").getBytes(StandardCharsets.UTF_8));
        in.flush();
        String line = lines.poll(timeout.toMillis(), TimeUnit.MILLISECONDS);
        if (line == null) throw new IOException("the Python peer did not answer " + req + " within " + timeout);
        if (line.equals(EOF)) throw new IOException("the Python peer exited (" + exitText() + ") on " + req);
        JsonNode res = JSON.readTree(line);
        if (res.has("error")) throw new IOException("the Python peer failed " + req + ": " + res.get("error").asText());
        return res;
    }

    private String exitText() {
        try {
            return process.waitFor(5, TimeUnit.SECONDS) ? "exit " + process.exitValue() : "still running";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "interrupted";
        }
    }

    @Override
    public void close() {
        try {
            in.write("{\"op\":\"exit\"}\n".getBytes(StandardCharsets.UTF_8));
            in.close();
        } catch (IOException ignored) {
            // already gone
        }
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}
