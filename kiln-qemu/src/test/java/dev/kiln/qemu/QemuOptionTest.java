package dev.kiln.qemu;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class QemuOptionTest {
    @Test
    void typeThenPropertiesInTheOrderGivenWithRepeatsAndFlags() {
        QemuOption o = QemuOption.of("user").set("id", "n0").set("hostfwd", "tcp::1-:2").set("hostfwd", "tcp::3-:4").flag("ipv6");
        assertThat(o).hasToString("user,id=n0,hostfwd=tcp::1-:2,hostfwd=tcp::3-:4,ipv6");
        assertThat(QemuOption.of(null).set("fd", 3).set("set", 1)).hasToString("fd=3,set=1");
        assertThat(QemuOption.of("x").setIfPresent("a", null).setIfPresent("b", 2)).hasToString("x,b=2");
    }

    @Test
    void commasInValuesAreDoubledSoAPathWithACommaStaysOneValue() {
        QemuOption o = QemuOption.of("socket").set("id", "mon").set("path", Path.of("/tmp/a,b/mon.sock"));
        assertThat(o).hasToString("socket,id=mon,path=/tmp/a,,b/mon.sock");
    }

    @Test
    void keysWithCommasOrEqualsAreRefused() {
        assertThatThrownBy(() -> QemuOption.of("x").set("a,b", 1)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> QemuOption.of("x").set("a=b", 1)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> QemuOption.of("x,y")).isInstanceOf(IllegalArgumentException.class);
    }

    /** Commas in values are escaped; QEMU itself must accept what Kiln writes. */
    @Test
    void qemuStartsWithItsSocketsInADirectoryWhoseNameHasACommaAndASpace() throws Exception {
        QemuAvailable.require();
        Path dir = java.nio.file.Files.createTempDirectory("kiln a,b-");
        try (QemuMachine vm = QemuMachine.builder().noGuest().paused(true).sockDir(dir).start()) {
            assertThat(vm.command("query-status").path("status").asText()).isEqualTo("prelaunch");
            assertThat(vm.commandLine()).anyMatch(a -> a.contains("kiln a,,b-"));
        } finally {
            java.nio.file.Files.deleteIfExists(dir);
        }
        LeakCheck.assertNoneLeft();
    }
}
