package dev.kiln.agent;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The bounded pipe behind a handle's streams: back-pressure, end of stream, a broken or discarded stream. */
class OutputSinkTest {
    @Test
    void aFullPipeHoldsItsWriterUntilTheReaderTakesBytesAndThenEnds() throws Exception {
        OutputSink.Pipe pipe = new OutputSink.Pipe(4, "test stream");
        CompletableFuture<Void> writer = CompletableFuture.runAsync(() -> pipe.accept("abcdefgh".getBytes(), 0, 8),
                r -> Thread.ofVirtual().start(r));
        // 8 bytes cannot go into 4 before the reader takes some: the writer cannot be done yet, whenever it ran.
        assertThat(writer.isDone()).isFalse();
        assertThat(pipe.available()).isLessThanOrEqualTo(4);
        byte[] buf = new byte[8];
        StringBuilder all = new StringBuilder();
        while (all.length() < 8) {
            int m = pipe.read(buf, 0, 8);
            assertThat(m).isBetween(1, 4);
            all.append(new String(buf, 0, m));
        }
        writer.get(10, TimeUnit.SECONDS);
        assertThat(all.toString()).isEqualTo("abcdefgh");
        pipe.end(null);
        assertThat(pipe.read()).isEqualTo(-1);
    }

    @Test
    void aBrokenStreamSaysWhyAndADiscardedOneNeitherBlocksNorKeeps() throws Exception {
        OutputSink.Pipe broken = new OutputSink.Pipe(16, "test stream");
        broken.accept("x".getBytes(), 0, 1);
        broken.end("the machine closed");
        assertThat(broken.read()).isEqualTo('x');
        assertThatThrownBy(broken::read).isInstanceOf(IOException.class).hasMessageContaining("the machine closed");

        OutputSink.Pipe discarded = new OutputSink.Pipe(2, "test stream");
        discarded.close();
        discarded.accept(new byte[1000], 0, 1000); // returns at once: nobody reads it
        assertThatThrownBy(discarded::read).isInstanceOf(IOException.class).hasMessageContaining("closed");
    }

    @Test
    void collectKeepsUpToItsLimitAndCountsTheRest() {
        OutputSink.Collect c = new OutputSink.Collect(3);
        c.accept("abcde".getBytes(), 0, 5);
        assertThat(c.bytes()).isEqualTo("abc".getBytes());
        assertThat(c.dropped()).isEqualTo(2);
    }
}
