package dev.kiln.junit;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class EvidenceNamesTest {
    @Test
    void namesBecomeSafePathElements() {
        assertThat(Evidence.sanitize("dev.kiln.junit.Samples$Failing")).isEqualTo("dev.kiln.junit.Samples_Failing");
        assertThat(Evidence.sanitize("../../etc/passwd")).isEqualTo("etc_passwd");
        assertThat(Evidence.sanitize("..")).isEqualTo("_");
        assertThat(Evidence.sanitize("a b/c\\d:e*f")).isEqualTo("a_b_c_d_e_f");
        assertThat(Evidence.sanitize("x".repeat(300))).hasSize(120);
    }

    @Test
    void theTestPartOfAUniqueIdLiesBelowTheInnermostClass() {
        assertThat(Evidence.testSegment("[engine:junit-jupiter]/[class:a.B]/[method:boots()]")).isEqualTo("boots");
        assertThat(Evidence.testSegment("[engine:junit-jupiter]/[class:a.B]/[nested-class:C]/[method:t(int, java.lang.String)]"))
                .isEqualTo("t_int_String");
        assertThat(Evidence.testSegment("[engine:junit-jupiter]/[class:a.B]/[test-template:t(int)]/[test-template-invocation:%232]"))
                .isEqualTo("t_int-2");
    }

    @Test
    void theCommandLineIsQuotedForAShell() {
        assertThat(Evidence.shellQuoted(List.of("qemu-system-x86_64", "-append", "console=ttyS0 panic=-1", "it's")))
                .isEqualTo("qemu-system-x86_64 -append 'console=ttyS0 panic=-1' 'it'\\''s'");
    }
}
