package dev.kiln.image;

import dev.kiln.KilnException;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Against the host's real apt: resolves without downloading, and says what to do when a package is unknown. */
class AptTest {
    @BeforeEach
    void needsApt() {
        assumeTrue(Apt.onPath("apt-get") != null, "needs a Debian-like host (apt-get)");
    }

    @Test
    void anUnknownPackageSaysToRunAptGetUpdate() {
        assertThatThrownBy(() -> Apt.locate(List.of("busybox-static", "no-such-package-kiln")))
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("run `apt-get update`")
                .hasMessageContaining("Unable to locate package no-such-package-kiln");
        assertThatThrownBy(() -> Apt.resolveMeta("no-such-package-kiln", "linux-image-"))
                .hasMessageContaining("run `apt-get update`");
    }

    @Test
    void theKernelMetapackageResolvesToTheRealPackage() {
        String real = Apt.resolveMeta(DefaultImage.KERNEL_META, "linux-image-");
        assertThat(real).matches("linux-image-\\d.*-cloud-amd64");
    }

    @Test
    void theAgentClosureHasItsLibrariesButNoVirtualPackagesOrInstallMachinery() {
        List<String> closure = Apt.dependencyClosure("qemu-guest-agent");
        assertThat(closure).contains("qemu-guest-agent", "libc6", "libglib2.0-0")
                .noneMatch(n -> n.startsWith("<")).doesNotContain("perl", "init-system-helpers");
        assertThat(Apt.locate(List.of("qemu-guest-agent")).getFirst())
                .satisfies(p -> assertThat(p.fileName()).startsWith("qemu-guest-agent_").endsWith(".deb"))
                .satisfies(p -> assertThat(p.sha256()).hasSize(64));
    }
}
