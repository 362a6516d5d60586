package dev.kiln.support;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.function.Consumer;

/**
 * Cuts a byte stream into JSON objects, as QMP and the guest agent send them: objects back to back,
 * whitespace between. A 0xFF byte (the guest agent's resynchronisation marker, never valid inside
 * UTF-8 JSON) drops any partial object. Anything else between objects is garbage and fails loudly.
 */
public final class JsonFramer {
    private static final int DEFAULT_MAX = 64 << 20;
    /** Shared mapper; strings may be as long as a whole message (qemu-ga sends up to 16 MiB of base64). */
    public static final ObjectMapper JSON = new ObjectMapper(JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder().maxStringLength(DEFAULT_MAX).build()).build());

    private final Consumer<ObjectNode> sink;
    private final int maxObjectBytes;
    private byte[] buf = new byte[8192];
    private int len;
    private int depth;
    private boolean inString;
    private boolean escaped;

    public JsonFramer(Consumer<ObjectNode> sink) {
        this(sink, DEFAULT_MAX);
    }

    public JsonFramer(Consumer<ObjectNode> sink, int maxObjectBytes) {
        this.sink = sink;
        this.maxObjectBytes = maxObjectBytes;
    }

    /** Feeds bytes read from the peer; complete objects go to the sink in order. */
    public void feed(ByteBuffer bytes) {
        while (bytes.hasRemaining()) feed(bytes.get());
    }

    public void feed(byte[] bytes, int off, int n) {
        for (int i = off; i < off + n; i++) feed(bytes[i]);
    }

    private void feed(byte b) {
        if (b == (byte) 0xFF) {
            reset();
            return;
        }
        if (depth == 0) {
            if (b == ' ' || b == '\n' || b == '\r' || b == '\t') return;
            if (b != '{') throw new ProtocolException("expected a JSON object but got " + describe(b) + " from the peer");
        }
        if (len == buf.length) {
            if (len >= maxObjectBytes) {
                reset();
                throw new ProtocolException("a JSON message from the peer exceeds " + maxObjectBytes + " bytes");
            }
            buf = Arrays.copyOf(buf, Math.min(maxObjectBytes, buf.length * 2));
        }
        buf[len++] = b;
        if (inString) {
            if (escaped) escaped = false;
            else if (b == '\\') escaped = true;
            else if (b == '"') inString = false;
            return;
        }
        switch (b) {
            case '"' -> inString = true;
            case '{', '[' -> depth++;
            case '}', ']' -> {
                if (--depth == 0) emit();
            }
            default -> { }
        }
    }

    private void emit() {
        JsonNode node;
        try {
            node = JSON.readTree(buf, 0, len);
        } catch (IOException e) {
            String text = new String(buf, 0, Math.min(len, 200), java.nio.charset.StandardCharsets.UTF_8);
            reset();
            throw new ProtocolException("malformed JSON from the peer: " + text, e);
        }
        reset();
        if (buf.length > 1 << 20) buf = new byte[8192];
        if (!(node instanceof ObjectNode obj)) throw new ProtocolException("expected a JSON object, got " + node);
        sink.accept(obj);
    }

    private void reset() {
        len = 0;
        depth = 0;
        inString = false;
        escaped = false;
    }

    /** Bytes of an unfinished object held back; a peer that closes with some pending closed mid-message. */
    public int pending() {
        return len;
    }

    private static String describe(byte b) {
        int v = b & 0xFF;
        return v >= 0x20 && v < 0x7F ? "'" + (char) v + "'" : String.format("byte 0x%02x", v);
    }

    /** Serialises a message to bytes, for writers. */
    public static byte[] toBytes(JsonNode node) {
        try {
            return JSON.writeValueAsBytes(node);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
