package dev.kiln.firecracker;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** A binary's version, as a snapshot records it and a restore compares it. */
class FirecrackerBinaryTest {
    @Test
    void theVersionIsTheBinarysOwnWithoutItsV() {
        assertThat(FirecrackerBinary.version(Binaries.firecracker())).isEqualTo(Binaries.version()).doesNotStartWith("v");
        assertThatThrownBy(() -> FirecrackerBinary.version("/bin/true")).hasMessageContaining("gave no Firecracker version");
    }

    @Test
    void releasesCompareByMajorAndMinor() {
        assertThat(FirecrackerBinary.atLeast("1.14.2", 1, 14)).isTrue();
        assertThat(FirecrackerBinary.atLeast("v1.15.0-dev", 1, 14)).isTrue();
        assertThat(FirecrackerBinary.atLeast("2.0.0", 1, 14)).isTrue();
        assertThat(FirecrackerBinary.atLeast("1.7.0", 1, 14)).isFalse();
        assertThat(FirecrackerBinary.atLeast("0.25.2", 1, 0)).isFalse();
        assertThat(FirecrackerBinary.atLeast("unknown", 0, 0)).isFalse();
    }
}
