package com.example;

import dev.kiln.ExecResult;
import dev.kiln.Machine;
import dev.kiln.junit.KilnTest;
import dev.kiln.junit.Vm;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** Kiln's default image: one guest for the class, booted before the first test and closed after the last. */
@KilnTest
class DefaultImageTest {
    @Vm
    static Machine vm;

    @Test
    void runsACommandInTheGuest() {
        ExecResult r = vm.guest().exec("uname", "-s");   // argv, no shell
        assertThat(r.exitCode()).isZero();
        assertThat(r.stdoutText()).isEqualTo("Linux\n");
    }

    @Test
    void aShellCommandsOutputAndItsFailure() {
        assertThat(vm.guest().succeed("echo hello > /tmp/greeting && cat /tmp/greeting")).isEqualTo("hello\n");
        assertThat(vm.guest().exec("sh", "-c", "exit 3").exitCode()).isEqualTo(3);
    }
}
