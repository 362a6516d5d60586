package dev.kiln.junit;

import dev.kiln.Machine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code @Vm(image = "debian")}: a Debian guest with the test's packages under systemd, built once and cached. */
@ExtendWith(LeakCheck.class) // before @KilnTest: its afterAll runs after Kiln's
@KilnTest
class DebianVmTest {
    @Vm(image = "debian", packages = "nginx-light", readyTimeoutSeconds = 180)
    static Machine web;

    @Test
    void thePackagesServiceRunsUnderSystemd() {
        web.guest().waitForUnit("nginx.service", Duration.ofSeconds(60));
        web.guest().waitForOpenPort(80, Duration.ofSeconds(30));
        String page = web.guest().succeed("bash -c 'exec 3<>/dev/tcp/127.0.0.1/80;"
                + " printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'"); // minbase has no HTTP client: bash's /dev/tcp
        assertThat(page).startsWith("HTTP/1.1 200 OK").contains("Welcome to nginx");
        assertThat(web.guest().succeed("cat /proc/1/comm")).isEqualTo("systemd\n");
    }
}
