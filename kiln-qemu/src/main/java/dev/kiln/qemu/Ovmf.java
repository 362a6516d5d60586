package dev.kiln.qemu;

import dev.kiln.KilnException;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * UEFI for QEMU: OVMF's code (read-only, shared) and the template of its variable store, which each machine gets a
 * copy of (the firmware writes its boot entries there). $KILN_OVMF_CODE and $KILN_OVMF_VARS, else Debian's
 * {@code ovmf} package.
 */
record Ovmf(Path code, Path vars) {
    private static final List<String[]> DEBIAN = List.of(
            new String[] {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
            new String[] {"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"});

    static Ovmf find() {
        String code = System.getenv("KILN_OVMF_CODE"), vars = System.getenv("KILN_OVMF_VARS");
        if (code != null && vars != null) {
            Ovmf o = new Ovmf(Path.of(code), Path.of(vars));
            if (!Files.isReadable(o.code) || !Files.isReadable(o.vars)) {
                throw new KilnException("firmware: KILN_OVMF_CODE=" + code + " or KILN_OVMF_VARS=" + vars + " is not a readable file");
            }
            return o;
        }
        for (String[] pair : DEBIAN) {
            if (Files.isReadable(Path.of(pair[0])) && Files.isReadable(Path.of(pair[1]))) return new Ovmf(Path.of(pair[0]), Path.of(pair[1]));
        }
        throw new KilnException("firmware: UEFI needs OVMF, which is not on this host (looked for " + DEBIAN.getFirst()[0]
                + "): apt-get install ovmf, or set KILN_OVMF_CODE and KILN_OVMF_VARS");
    }
}
