package dev.kiln.junit;

import org.junit.jupiter.api.Test;

import java.lang.module.ModuleDescriptor;
import java.lang.module.ModuleFinder;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.Set;
import java.util.stream.Collectors;

import static org.assertj.core.api.Assertions.assertThat;

/** Each library module exports its API and nothing else; the OS layer, the support code and the driver SPI stay Kiln's. */
class ModuleDescriptorsTest {
    private static ModuleDescriptor descriptorOf(Class<?> anyClassOfTheModule) throws URISyntaxException {
        Path where = Path.of(anyClassOfTheModule.getProtectionDomain().getCodeSource().getLocation().toURI());
        return ModuleFinder.of(where).findAll().iterator().next().descriptor();
    }

    private static Set<String> openlyExported(ModuleDescriptor d) {
        return d.exports().stream().filter(e -> !e.isQualified()).map(ModuleDescriptor.Exports::source).collect(Collectors.toSet());
    }

    private static Set<String> exportedTo(ModuleDescriptor d, String pkg) {
        return d.exports().stream().filter(e -> e.source().equals(pkg)).flatMap(e -> e.targets().stream()).collect(Collectors.toSet());
    }

    @Test
    void eachModuleExportsItsApiOnly() throws Exception {
        ModuleDescriptor core = descriptorOf(dev.kiln.Machine.class);
        assertThat(core.name()).isEqualTo("dev.kiln.core");
        assertThat(openlyExported(core)).containsExactlyInAnyOrder("dev.kiln", "dev.kiln.agent", "dev.kiln.vmm");
        assertThat(exportedTo(core, "dev.kiln.os")).allMatch(m -> m.startsWith("dev.kiln.")).isNotEmpty();
        assertThat(exportedTo(core, "dev.kiln.vmm.spi")).containsExactlyInAnyOrder("dev.kiln.qemu", "dev.kiln.firecracker", "dev.kiln.ssh");
        assertThat(core.uses()).contains("dev.kiln.vmm.spi.MachineFactory");

        ModuleDescriptor qemu = descriptorOf(dev.kiln.qemu.QemuMachine.class);
        assertThat(openlyExported(qemu)).containsExactlyInAnyOrder("dev.kiln.qemu", "dev.kiln.qemu.net");
        assertThat(qemu.provides()).anySatisfy(p -> assertThat(p.service()).isEqualTo("dev.kiln.vmm.spi.MachineFactory"));

        ModuleDescriptor firecracker = descriptorOf(dev.kiln.firecracker.FirecrackerMachine.class);
        assertThat(openlyExported(firecracker)).containsExactlyInAnyOrder("dev.kiln.firecracker", "dev.kiln.firecracker.api",
                "dev.kiln.firecracker.api.model", "dev.kiln.firecracker.net");

        assertThat(openlyExported(descriptorOf(dev.kiln.image.DefaultImage.class))).containsExactly("dev.kiln.image");
        assertThat(openlyExported(descriptorOf(KilnExtension.class))).containsExactly("dev.kiln.junit");
    }
}
