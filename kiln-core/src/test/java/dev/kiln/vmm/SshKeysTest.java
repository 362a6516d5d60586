package dev.kiln.vmm;

import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.KeyPair;
import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The keys Kiln writes are the keys OpenSSH reads: checked with the real ssh-keygen. */
class SshKeysTest {
    @TempDir
    Path dir;

    @Test
    void openSshReadsThePublicLineAndThePrivatePemAndAgreesOnTheFingerprint() throws IOException {
        assumeTrue(Executables.find("ssh-keygen").isPresent(), "ssh-keygen is not installed (apt-get install openssh-client)");
        KeyPair k = SshKeys.generate();
        Path pub = Files.writeString(dir.resolve("k.pub"), SshKeys.openSsh(k.getPublic(), "kiln@test") + "\n");
        HostCommand.Result fp = HostCommand.run(List.of("ssh-keygen", "-l", "-E", "sha256", "-f", pub.toString()), null,
                Duration.ofSeconds(30), "ssh-keygen -l");
        assertThat(fp.ok()).as(fp.complaint()).isTrue();
        assertThat(fp.stdout()).contains(SshKeys.fingerprint(k.getPublic())).contains("kiln@test").contains("(ECDSA)");

        Path priv = Files.writeString(dir.resolve("k"), SshKeys.pem(k.getPrivate()));
        Files.setPosixFilePermissions(priv, PosixFilePermissions.fromString("rw-------"));
        HostCommand.Result derived = HostCommand.run(List.of("ssh-keygen", "-y", "-f", priv.toString()), null, Duration.ofSeconds(30),
                "ssh-keygen -y");
        assertThat(derived.ok()).as(derived.complaint()).isTrue();
        assertThat(derived.stdout().strip()).isEqualTo(SshKeys.openSsh(k.getPublic(), null));
    }
}
