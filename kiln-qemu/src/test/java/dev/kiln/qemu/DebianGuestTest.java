package dev.kiln.qemu;

import dev.kiln.Drive;
import dev.kiln.ExecRequest;
import dev.kiln.GuestImage;
import dev.kiln.GuestProcess;
import dev.kiln.KilnException;
import dev.kiln.Machine;
import dev.kiln.Snapshot;
import dev.kiln.image.DebianImage;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A Debian guest with systemd, built from Debian's packages (once per cache): nginx with the test's own site,
 * reached from the host; a scratch disk the guest formats and mounts; writes that survive a reboot on the root
 * overlay; and the service helpers' failure messages.
 */
@ExtendWith(QemuAvailable.class)
class DebianGuestTest {
    private static final Duration BOOT = Duration.ofSeconds(180), UNIT = Duration.ofSeconds(60);
    private static GuestImage nginx;

    @BeforeAll
    static void buildImage() throws URISyntaxException {
        Path site = Path.of(DebianGuestTest.class.getResource("/debian-site").toURI());
        nginx = DebianImage.builder().packages("nginx-light")
                .file(site.resolve("index.html"), "/srv/www/index.html")
                .file(site.resolve("kiln-site.conf"), "/etc/nginx/sites-enabled/default")
                .run("echo built-by-kiln > /etc/kiln-build-marker")
                .build(System.out::println);
    }

    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft();
    }

    private static QemuMachine.Builder debian() {
        return QemuMachine.builder().image(nginx).memoryMib(512).readyTimeout(BOOT);
    }

    @Test
    void nginxServesTheTestsPageToTheHost() throws Exception {
        FileTime baseWritten = Files.getLastModifiedTime(nginx.rootDisk());
        try (QemuMachine vm = debian().forward(80).start()) {
            vm.guest().waitForUnit("nginx.service", UNIT);
            assertThat(vm.guest().succeed("cat /etc/kiln-build-marker")).isEqualTo("built-by-kiln\n");
            assertThat(vm.guest().succeed("systemctl is-system-running || true")).isIn("running\n", "degraded\n");
            InetSocketAddress http = vm.hostAddress(80);
            try (HttpClient client = HttpClient.newHttpClient()) {
                HttpResponse<String> page = client.send(HttpRequest.newBuilder(URI.create("http://" + http.getHostString() + ":"
                        + http.getPort() + "/")).timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
                assertThat(page.statusCode()).isEqualTo(200);
                assertThat(page.body()).contains("served by nginx in a Kiln guest");
            }
            assertThat(vm.guest().systemctl("is-active", "nginx").stdoutText()).isEqualTo("active\n");

            // The service helpers' failures say what is wrong, at once.
            assertThatThrownBy(() -> vm.guest().waitForUnit("no-such-thing.service", UNIT)).isInstanceOf(KilnException.class)
                    .hasMessageContaining("unit no-such-thing.service does not exist");
            vm.guest().succeed("systemd-run --unit=kiln-broken --quiet false");
            assertThatThrownBy(() -> vm.guest().waitForUnit("kiln-broken.service", UNIT))
                    .hasMessageContaining("unit kiln-broken.service failed (exit-code)").hasMessageContaining("journal (last 30 lines)");
            assertThatThrownBy(() -> vm.guest().succeed("echo to-stdout; echo to-stderr >&2; exit 3"))
                    .isInstanceOf(dev.kiln.CommandFailedException.class).hasMessageContaining("exited 3")
                    .hasMessageContaining("to-stdout").hasMessageContaining("to-stderr");
            assertThat(vm.guest().fail("ls /no/such/dir")).contains("No such file or directory");

            // Live exec under Debian's dash and udev's port names: a handle streams before its input comes.
            try (GuestProcess p = vm.guest().start("sh", "-c", "echo first; read x; echo \"got $x in $(pwd) as $KILN_T\"")) {
                var out = new java.io.BufferedReader(new java.io.InputStreamReader(p.stdout(), java.nio.charset.StandardCharsets.UTF_8));
                assertThat(out.readLine()).isEqualTo("first");
                p.stdin().write("input\n".getBytes(java.nio.charset.StandardCharsets.UTF_8));
                assertThat(out.readLine()).isEqualTo("got input in / as ");
                assertThat(p.waitFor(UNIT)).isZero();
            }
            assertThat(vm.guest().exec(ExecRequest.of("sh", "-c", "echo \"$(pwd) $KILN_T\"").workingDir("/srv/www").env("KILN_T", "t 1")
                    .build()).stdoutText()).isEqualTo("/srv/www t 1\n");
        }
        assertThat(Files.getLastModifiedTime(nginx.rootDisk())).as("the image's disk").isEqualTo(baseWritten);
    }

    @Test
    void aScratchDiskIsFormattedAndMountedAndTheRootOverlayKeepsWritesAcrossAReboot() {
        try (QemuMachine vm = debian().drive(Drive.scratch(256L << 20).id("data")).start()) {
            vm.guest().waitForFile("/dev/disk/by-id/virtio-data", UNIT); // udev names the disk by its id
            vm.guest().succeed("mkfs.ext4 -q /dev/disk/by-id/virtio-data && mkdir -p /mnt/data"
                    + " && mount /dev/disk/by-id/virtio-data /mnt/data && echo on-the-scratch-disk > /mnt/data/file");
            assertThat(vm.guest().succeed("df --output=size -BM /mnt/data | tail -1").strip()).matches("2[0-9]{2}M");
            vm.guest().succeed("echo on-the-root-disk > /var/lib/kiln-state");
            String bootId = vm.guest().succeed("cat /proc/sys/kernel/random/boot_id");

            vm.reboot(BOOT); // systemd's own reboot writes the file out
            assertThat(vm.guest().succeed("cat /proc/sys/kernel/random/boot_id")).isNotEqualTo(bootId);
            assertThat(vm.guest().succeed("cat /var/lib/kiln-state")).isEqualTo("on-the-root-disk\n");
            vm.guest().succeed("mount /dev/disk/by-id/virtio-data /mnt/data");
            assertThat(vm.guest().succeed("cat /mnt/data/file")).isEqualTo("on-the-scratch-disk\n");
        }
    }

    @Test
    void anUnknownPackageIsNamedInAptsWords() {
        assertThatThrownBy(() -> DebianImage.builder().packages("kiln-no-such-package").build(System.out::println))
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("bookworm has no package kiln-no-such-package")
                .hasMessageContaining("Unable to locate package kiln-no-such-package");
    }

    @Test
    void aDiskTooSmallForThePackagesIsRefusedSayingWhatTheyNeed() {
        assertThatThrownBy(() -> DebianImage.builder().packages("nginx-light").sizeMib(200).build(System.out::println))
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("a disk of 200 MiB is too small").hasMessageMatching("(?s).*needs about \\d+ MiB.*");
    }

    @Test
    void clonesOfATemplateRunItsServicesEachWithAnIdentityAndADiskOfItsOwn(@TempDir Path dir) throws Exception {
        String[] templateId = new String[1];
        Snapshot template = Snapshot.template(debian().forward(80).spec(), dir.resolve("template"), vm -> {
            vm.guest().waitForUnit("nginx.service", UNIT);
            templateId[0] = vm.guest().succeed("cat /etc/machine-id").strip();
        });
        try (Machine a = template.restore(debian().forward(80).spec()); Machine b = template.restore(debian().forward(80).spec())) {
            for (Machine clone : List.of(a, b)) {
                assertThat(clone.guest().systemctl("is-active", "nginx").stdoutText()).isEqualTo("active\n");
                assertThat(clone.guest().succeed("hostname").strip()).isEqualTo(clone.id());
                assertThat(clone.guest().succeed("cat /etc/machine-id").strip()).matches("[0-9a-f]{32}").isNotEqualTo(templateId[0]);
                InetSocketAddress http = clone.hostAddress(80);
                try (HttpClient client = HttpClient.newHttpClient()) {
                    HttpResponse<String> page = client.send(HttpRequest.newBuilder(URI.create("http://" + http.getHostString() + ":"
                            + http.getPort() + "/")).timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
                    assertThat(page.body()).contains("served by nginx in a Kiln guest");
                }
            }
            assertThat(a.guest().succeed("cat /etc/machine-id")).isNotEqualTo(b.guest().succeed("cat /etc/machine-id"));
            assertThat(a.hostAddress(80)).isNotEqualTo(b.hostAddress(80));
            a.guest().succeed("echo clone-a > /root/written && sync");
            assertThat(b.guest().exec("test", "-e", "/root/written").exitCode()).as("clone a's disk write, seen from clone b").isNotZero();
        }
    }
}
