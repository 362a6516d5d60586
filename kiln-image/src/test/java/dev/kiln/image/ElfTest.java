package dev.kiln.image;

import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class ElfTest {
    @Test
    void readsNeededAndInterpreterOfADynamicExecutable() {
        Path exe = Files.exists(Path.of("/usr/bin/qemu-system-x86_64")) ? Path.of("/usr/bin/qemu-system-x86_64") : Path.of("/bin/ls");
        Elf elf = Elf.read(exe);
        assertThat(elf.needed()).contains("libc.so.6").allMatch(s -> s.contains(".so"));
        assertThat(elf.interpreter()).hasValue("/lib64/ld-linux-x86-64.so.2");
    }

    @Test
    void readsSectionsByName() {
        Elf ls = Elf.read(Path.of("/bin/ls"));
        assertThat(ls.section(".interp")).hasValueSatisfying(b -> assertThat(new String(b)).startsWith("/lib64/ld-linux-x86-64.so.2"));
        assertThat(ls.section(".no-such-section")).isEmpty();
    }

    @Test
    void aStaticExecutableNeedsNothing() {
        // glibc's ldconfig is static on Debian and Ubuntu (libc-bin, always installed)
        Path ldconfig = Path.of("/sbin/ldconfig");
        assumeTrue(Files.isRegularFile(ldconfig), "no /sbin/ldconfig on this host");
        assertThat(Elf.read(ldconfig).interpreter()).isEmpty();
        assertThat(Elf.read(ldconfig).needed()).isEmpty();
    }

    @Test
    void rejectsWhatIsNotElf() {
        assertThatThrownBy(() -> Elf.of("text", "#!/bin/sh\necho this is long enough to hold an ELF header......................\n".getBytes()).needed())
                .isInstanceOf(KilnException.class).hasMessageContaining("not an ELF file");
    }
}
