package dev.kiln.firecracker.api;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * Stands in for Firecracker where none can run (the contract tests): records every request and answers
 * with what {@code answers} says for it.
 */
final class RecordingTransport implements ApiTransport {
    /** One request as the client sent it; {@code body} is null when there was none. */
    record Sent(String method, String path, String body) {}

    private final List<Sent> sent = new ArrayList<>();
    private final Function<Sent, Response> answers;

    RecordingTransport(Function<Sent, Response> answers) {
        this.answers = answers;
    }

    /** Answers every request with 204 No Content. */
    static RecordingTransport noContent() {
        return new RecordingTransport(s -> new Response(204, new byte[0]));
    }

    static Response json(int status, String body) {
        return new Response(status, body.getBytes(StandardCharsets.UTF_8));
    }

    @Override
    public synchronized Response exchange(String method, String path, byte[] jsonBody, Duration timeout) {
        Sent s = new Sent(method, path, jsonBody == null ? null : new String(jsonBody, StandardCharsets.UTF_8));
        sent.add(s);
        return answers.apply(s);
    }

    synchronized List<Sent> sent() {
        return List.copyOf(sent);
    }

    synchronized Sent last() {
        return sent.getLast();
    }

    synchronized void clear() {
        sent.clear();
    }

    @Override
    public String describe() {
        return "recording transport";
    }

    @Override
    public void close() {}
}
