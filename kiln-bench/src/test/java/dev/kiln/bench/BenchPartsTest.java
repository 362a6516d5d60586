package dev.kiln.bench;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** The bench's own parts that need no VM: statistics, the peers' command line, the plot, the options. */
class BenchPartsTest {
    @Test
    void quantilesInterpolateBetweenRanks() {
        Samples s = new Samples("x");
        for (int i = 10; i >= 1; i--) s.add(i);
        assertThat(s.median()).isEqualTo(5.5);
        assertThat(s.min()).isEqualTo(1);
        assertThat(s.max()).isEqualTo(10);
        assertThat(s.p10()).isCloseTo(1.9, within(1e-9));
        assertThat(s.p90()).isCloseTo(9.1, within(1e-9));
        assertThat(s.summary()).isEqualTo("5.50 ms (1.90 ms–9.10 ms)");
        assertThat(s.toJson().get("values")).hasSize(10);
    }

    @Test
    void fewSamplesShowMinAndMaxAndNaNIsRefused() {
        Samples s = new Samples("few", "MiB");
        s.add(1);
        s.add(3);
        assertThat(s.summary()).isEqualTo("2.00 MiB (1.00 MiB–3.00 MiB)");
        assertThat(s.spreadLabel()).isEqualTo("min–max");
        assertThatThrownBy(() -> s.add(Double.NaN)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("few");
        assertThatThrownBy(() -> new Samples("empty").median()).hasMessageContaining("empty");
    }

    @Test
    void peersGetKilnsCommandLineLessItsMonitorAndDisplay() {
        List<String> kiln = List.of("qemu-system-x86_64", "-display", "none", "-vga", "none", "-nodefaults",
                "-chardev", "socket,id=mon,path=/tmp/x/monitor.sock", "-mon", "chardev=mon,mode=control",
                "-machine", "none", "-accel", "tcg", "-m", "16", "-S");
        assertThat(PeerBenchmark.peerArgs(kiln))
                .containsExactly("-nodefaults", "-machine", "none", "-accel", "tcg", "-m", "16", "-S");
    }

    @Test
    void shellQuotingKeepsPlainWordsAndQuotesTheRest() {
        assertThat(PeerBenchmark.shellQuote("-M")).isEqualTo("-M");
        assertThat(PeerBenchmark.shellQuote("microvm,rtc=on")).isEqualTo("microvm,rtc=on");
        assertThat(PeerBenchmark.shellQuote("console=ttyS0 panic=-1")).isEqualTo("'console=ttyS0 panic=-1'");
        assertThat(PeerBenchmark.shellQuote("it's")).isEqualTo("'it'\\''s'");
    }

    @Test
    void thePlotIsAPng(@TempDir Path dir) throws Exception {
        Path png = dir.resolve("t.png");
        TimelinePlot.write(png, "title", "subtitle", List.of(
                new TimelinePlot.Row("raw", List.of(new TimelinePlot.Phase("a", 100), new TimelinePlot.Phase("b", 900)), 800, 1200),
                new TimelinePlot.Row("kiln", List.of(new TimelinePlot.Phase("a", 120), new TimelinePlot.Phase("c", 1000)), 900, 1300)));
        BufferedImage img = ImageIO.read(png.toFile());
        assertThat(img.getWidth()).isEqualTo(1100);
        assertThat(img.getHeight()).isGreaterThan(150);
    }

    @Test
    void optionsAreCheckedAndNamed(@TempDir Path dir) {
        PeerBenchmark.Options o = PeerBenchmark.Options.parse(new String[] {"--runs", "3", "--only", "qmp,boot", "--out", dir.toString()});
        assertThat(o.runs).isEqualTo(3);
        assertThat(o.runs("qmp")).isTrue();
        assertThat(o.runs("launch")).isFalse();
        assertThat(o.out).isEqualTo(dir);
        assertThatThrownBy(() -> PeerBenchmark.Options.parse(new String[] {"--runs", "0"})).hasMessageContaining("--runs");
        assertThatThrownBy(() -> PeerBenchmark.Options.parse(new String[] {"--only", "boot,nap"})).hasMessageContaining("nap");
        assertThatThrownBy(() -> PeerBenchmark.Options.parse(new String[] {"--frobnicate"})).hasMessageContaining("--frobnicate");
        assertThatThrownBy(() -> PeerBenchmark.Options.parse(new String[] {"--qmp"})).hasMessageContaining("needs a value");
    }
}
