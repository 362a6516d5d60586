package dev.kiln.image;

import dev.kiln.GuestImage;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.Deflater;
import java.util.zip.GZIPOutputStream;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * Time from spawning QEMU (microvm, TCG) to KILN-READY with the initramfs uncompressed vs gzip, boots interleaved
 * so that load from other processes hits both alike. A measurement, not a test: run with
 * {@code mvn -pl kiln-core,kiln-image test -Dtest=InitramfsCompressionBench -Dkiln.bench=true}.
 */
@EnabledIfSystemProperty(named = "kiln.bench", matches = "true")
class InitramfsCompressionBench {
    @Test
    void uncompressedVersusGzip(@TempDir Path dir) throws Exception {
        GuestImage plain = DefaultImage.get(System.out::println);
        Path gz = dir.resolve("initramfs.cpio.gz");
        try (InputStream in = Files.newInputStream(plain.initrd());
             OutputStream out = new GZIPOutputStream(Files.newOutputStream(gz)) {{ def.setLevel(Deflater.BEST_COMPRESSION); }}) {
            in.transferTo(out);
        }
        Map<String, GuestImage> variants = new TreeMap<>(Map.of(
                "uncompressed " + DefaultImage.mib(Files.size(plain.initrd())), plain,
                "gzip " + DefaultImage.mib(Files.size(gz)), new GuestImage(plain.kernel(), gz, plain.cmdline(), plain.readyMarker(), plain.agent(), "gzip")));
        int rounds = Integer.getInteger("kiln.bench.rounds", 5);
        String extra = System.getProperty("kiln.bench.cmdline", "");
        Map<String, List<Long>> millis = new TreeMap<>(), cpu = new TreeMap<>();
        for (int i = 0; i < rounds; i++)
            for (var v : variants.entrySet())
                try (TestVm vm = new TestVm(v.getValue(), dir, extra)) {
                    Duration ready = vm.awaitMarker(Duration.ofSeconds(60));
                    if (ready == null) fail(v.getKey() + ": no ready marker; console:\n" + vm.console());
                    millis.computeIfAbsent(v.getKey(), k -> new ArrayList<>()).add(ready.toMillis());
                    cpu.computeIfAbsent(v.getKey(), k -> new ArrayList<>()).add(vm.markerCpu == null ? -1 : vm.markerCpu.toMillis());
                }
        millis.forEach((k, ms) -> System.out.println("KILN-READY, " + k + " (cmdline extra: '" + extra + "'): median "
                + median(ms) + " ms of " + ms + "; QEMU CPU time median " + median(cpu.get(k)) + " ms of " + cpu.get(k)));
    }

    private static long median(List<Long> values) {
        return values.stream().sorted().toList().get(values.size() / 2);
    }
}
