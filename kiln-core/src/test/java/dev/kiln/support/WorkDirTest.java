package dev.kiln.support;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

class WorkDirTest {
    @TempDir Path base;

    @Test
    void aNewWorkDirNamesItsOwnerAndIsPrivate() throws IOException {
        Path dir = WorkDir.create(base, "kiln-test-");
        assertThat(Files.getPosixFilePermissions(dir)).hasSize(3); // rwx for the owner only
        assertThat(Files.readString(dir.resolve(WorkDir.OWNER_FILE))).startsWith(ProcessHandle.current().pid() + " ");
        WorkDir.delete(dir);
        assertThat(dir).doesNotExist();
    }

    @Test
    void sweepRemovesTheDirsOfOwnersThatAreGoneAndKeepsTheRest() throws IOException {
        Path mine = WorkDir.create(base, "kiln-mine-");
        Path deadOwner = Files.createDirectory(base.resolve("kiln-dead-1"));
        String ns = WorkDir.owner(ProcessHandle.current()).split(" ")[2];
        Files.writeString(deadOwner.resolve(WorkDir.OWNER_FILE), "999999999 0 " + ns);
        Files.createDirectories(deadOwner.resolve("sub")).resolve("f").toFile().createNewFile();
        // Our own pid with another start time: the pid was reused, the owner is gone.
        Path reusedPid = Files.createDirectory(base.resolve("kiln-reused-1"));
        Files.writeString(reusedPid.resolve(WorkDir.OWNER_FILE), ProcessHandle.current().pid() + " 1 " + ns);
        // Another pid namespace (a container sharing the temp dir): its pids mean nothing here, leave it.
        Path otherNamespace = Files.createDirectory(base.resolve("kiln-container-1"));
        Files.writeString(otherNamespace.resolve(WorkDir.OWNER_FILE), "999999999 0 pid:[1]");
        Path noOwnerFile = Files.createDirectory(base.resolve("kiln-other-1"));
        Path notKiln = Files.createDirectory(base.resolve("something-else"));

        assertThat(WorkDir.sweep(base)).isEqualTo(2);
        assertThat(deadOwner).doesNotExist();
        assertThat(reusedPid).doesNotExist();
        assertThat(mine).exists();
        assertThat(otherNamespace).exists();
        assertThat(noOwnerFile).exists();
        assertThat(notKiln).exists();
    }
}
