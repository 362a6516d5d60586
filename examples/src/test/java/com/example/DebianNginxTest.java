package com.example;

import dev.kiln.Guest;
import dev.kiln.Machine;
import dev.kiln.junit.KilnTest;
import dev.kiln.junit.Vm;
import org.junit.jupiter.api.Test;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/** A Debian guest with nginx under systemd: its image is built from Debian's packages once, then taken from the cache. */
@KilnTest
class DebianNginxTest {
    @Test
    void nginxIsActiveAndListens(@Vm(image = "debian", packages = "nginx-light", readyTimeoutSeconds = 180) Machine web) {
        Guest guest = web.guest();
        guest.waitForUnit("nginx.service", Duration.ofSeconds(60));
        assertThat(guest.succeed("systemctl is-active nginx")).isEqualTo("active\n");
        guest.waitForOpenPort(80, Duration.ofSeconds(30));
    }
}
