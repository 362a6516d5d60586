package dev.kiln.qemu;

import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayDeque;
import java.util.List;

/** The last QMP messages both ways, for diagnostics: {@code →} sent, {@code ←} received. */
final class QmpTranscript {
    static final int LINES = 2000;

    private final ArrayDeque<String> lines = new ArrayDeque<>();
    private volatile boolean on = true;

    void sent(ObjectNode msg) {
        record("→ ", msg);
    }

    void received(ObjectNode msg) {
        record("← ", msg);
    }

    private void record(String direction, ObjectNode msg) {
        if (!on) return;
        String line = direction + msg;
        synchronized (lines) {
            if (lines.size() == LINES) lines.removeFirst();
            lines.addLast(line);
        }
    }

    List<String> lines() {
        synchronized (lines) {
            return List.copyOf(lines);
        }
    }

    /** Recording costs a string per message. */
    void recording(boolean on) {
        this.on = on;
    }
}
