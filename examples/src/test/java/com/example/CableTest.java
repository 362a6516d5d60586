package com.example;

import dev.kiln.junit.KilnTest;
import dev.kiln.junit.Vm;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.qemu.net.Cable;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** Two machines joined by a cable (a socket pair between their NICs), started together. */
@KilnTest
class CableTest {
    static final Cable cable = Cable.create();

    @Vm(spec = "left")
    static QemuMachine left;

    @Vm(spec = "right")
    static QemuMachine right;

    static QemuMachine.Builder left() {
        return QemuMachine.builder().name("left").nic(cable.a());
    }

    static QemuMachine.Builder right() {
        return QemuMachine.builder().name("right").nic(cable.b());
    }

    @AfterAll
    static void unplug() {
        cable.close();   // each QEMU holds its own copy of its end: this only closes ours
    }

    @Test
    void eachMachinePingsTheOther() {
        address(left, "10.0.0.1");
        address(right, "10.0.0.2");
        assertThat(left.guest().succeed("ping -c 3 -W 2 10.0.0.2")).contains("3 packets received");
        assertThat(right.guest().succeed("ping -c 1 -W 2 10.0.0.1")).contains("1 packets received");
    }

    private static void address(QemuMachine vm, String ip) {
        vm.guest().succeed("ip addr add " + ip + "/24 dev eth0 && ip link set eth0 up");
    }
}
