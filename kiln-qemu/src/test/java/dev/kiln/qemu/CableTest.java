package dev.kiln.qemu;

import dev.kiln.GuestImage;
import dev.kiln.Probe;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.net.Cable;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Two real guests joined by a {@link Cable}: nothing of Kiln's sits between their NICs. */
@ExtendWith(QemuAvailable.class)
class CableTest {
    static List<QemuMachine> vms = List.of();

    @BeforeAll
    static void boot() {
        GuestImage image = DefaultImage.get(System.out::println);
        try (Cable cable = Cable.create()) {
            vms = NetworkTest.bootInParallel(image, List.of(
                    b -> b.nic(cable.a()),
                    b -> b.nic(cable.b())));
        } // each QEMU has its own copy of its end: closing ours does not cut the cable
        NetworkTest.address(vms.get(0), "10.0.0.1");
        NetworkTest.address(vms.get(1), "10.0.0.2");
    }

    @AfterAll
    static void teardown() {
        NetworkTest.closeAll(vms);
        LeakCheck.assertNoneLeft();
    }

    @Test
    void eachGuestPingsTheOther() {
        String out = vms.get(0).guest().exec("ping", "-c", "3", "-W", "2", "10.0.0.2").orThrow().stdoutText();
        assertThat(out).contains("3 packets transmitted, 3 packets received");
        assertThat(vms.get(1).guest().exec("ping", "-c", "3", "-W", "2", "10.0.0.1").orThrow().stdoutText())
                .contains("3 packets received");
        assertThat(vms.get(1).guest().exec("ip", "neigh").stdoutText()).contains("10.0.0.1").contains(macOf(vms.get(0)));
    }

    @Test
    void aTcpStreamCrossesTheCableIntact() {
        // 2 MB of random bytes served by busybox httpd and fetched with wget, compared by sha256 on both sides.
        QemuMachine server = vms.get(1), client = vms.get(0);
        String served = server.guest().exec("sh", "-c", "mkdir -p /tmp/www && head -c 2000000 /dev/urandom > /tmp/www/data.bin"
                + " && httpd -p 8080 -h /tmp/www && sha256sum /tmp/www/data.bin").orThrow().stdoutText().split(" ")[0];
        String fetched = client.guest().exec("sh", "-c", "wget -q -O - http://10.0.0.2:8080/data.bin | sha256sum")
                .orThrow().stdoutText().split(" ")[0];
        assertThat(fetched).isEqualTo(served);
    }

    @Test
    void setLinkPullsTheCableAsTheGuestSeesItAndPlugsItBack() {
        QemuMachine a = vms.get(0);
        a.setLink("sock0", false);
        try {
            assertThat(a.guest().exec("cat", "/sys/class/net/eth0/carrier").stdoutText().trim()).isEqualTo("0");
            assertThat(a.guest().exec("ping", "-c", "2", "-W", "1", "10.0.0.2").exitCode()).isNotZero();
        } finally {
            a.setLink("sock0", true);
        }
        assertThat(a.guest().exec("cat", "/sys/class/net/eth0/carrier").stdoutText().trim()).isEqualTo("1");
        // The kernel takes the carrier at once but starts sending again only once its link watcher has run (up to a
        // second later; packets sent before that are dropped): wait for one answer, then expect every one.
        Probe.command("ping", "-c", "1", "-W", "1", "10.0.0.2").await(a, Duration.ofSeconds(30));
        assertThat(a.guest().exec("ping", "-c", "3", "-W", "2", "10.0.0.2").orThrow().stdoutText()).contains("3 packets received");
    }

    private static String macOf(QemuMachine vm) {
        return vm.guest().exec("cat", "/sys/class/net/eth0/address").orThrow().stdoutText().trim();
    }
}
