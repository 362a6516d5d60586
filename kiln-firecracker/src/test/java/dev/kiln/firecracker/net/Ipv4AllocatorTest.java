package dev.kiln.firecracker.net;

import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class Ipv4AllocatorTest {
    @Test
    void handsOutConsecutiveSlash30s() {
        Ipv4Allocator a = new Ipv4Allocator();
        Ipv4Allocator.Subnet first = a.next();
        assertThat(first.network().getHostAddress()).isEqualTo("192.168.0.0");
        assertThat(first.host().getHostAddress()).isEqualTo("192.168.0.1");
        assertThat(first.guest().getHostAddress()).isEqualTo("192.168.0.2");
        assertThat(first.hostCidr()).isEqualTo("192.168.0.1/30");
        Ipv4Allocator.Subnet second = a.next();
        assertThat(second.host().getHostAddress()).isEqualTo("192.168.0.5");
        assertThat(second.guest().getHostAddress()).isEqualTo("192.168.0.6");
        for (int i = 2; i < 64; i++) a.next();
        assertThat(a.next().network().getHostAddress()).isEqualTo("192.168.1.0");
    }

    @Test
    void runsOutClearly() {
        Ipv4Allocator a = new Ipv4Allocator("10.0.0.0", 29, 30);
        a.next();
        a.next();
        assertThatThrownBy(a::next).isInstanceOf(KilnException.class).hasMessageContaining("10.0.0.0/29 has no /30 left");
    }

    @Test
    void rejectsBadRanges() {
        assertThatThrownBy(() -> new Ipv4Allocator("10.0.0.1", 24, 30)).hasMessageContaining("not the network address");
        assertThatThrownBy(() -> new Ipv4Allocator("10.0.0.0", 24, 31)).hasMessageContaining("<= 30");
        assertThatThrownBy(() -> new Ipv4Allocator("ten", 24, 30)).hasMessageContaining("not an IPv4 address");
    }

    @Test
    void macFromIp() {
        assertThat(Mac.fromIp("192.168.0.2")).isEqualTo("06:00:C0:A8:00:02");
        assertThat(new Ipv4Allocator().next().guestMac()).isEqualTo("06:00:C0:A8:00:02");
    }
}
