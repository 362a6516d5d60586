package dev.kiln.vmm.spi;

import dev.kiln.Console;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.MachineSpec;
import dev.kiln.os.Fd;
import dev.kiln.os.Spawn;
import dev.kiln.os.UnixSocket;
import dev.kiln.support.VmmProcess;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Supplier;

/**
 * What the core hands a {@link VmmDriver} to spawn its VMM: the machine's id, spec and image, its private work
 * directory, its console (for the driver to attach), the VMM's output socket, and the way to spawn under the
 * lifeline.
 *
 * @param id        the machine's id
 * @param spec      the machine's spec
 * @param image     what it boots (the default image resolved), or null for no guest
 * @param workDir   the machine's private directory (mode 0700), removed at cleanup and by the lifeline
 * @param drives    the spec's drives, checked, made and locked: the files to attach, in order
 * @param console   the machine's console, for the driver to attach to the VMM's serial line
 * @param vmmOutput the write end of the socket the core reads the VMM's own output from: the VMM's stderr (and
 *                  its stdout unless that is the console)
 * @param vmmState  what became of the VMM and the guest kernel, for error messages; null while all is well
 * @param restoreState the saved state to go on from instead of booting ({@link VmmDriver#saveState}), or null
 * @param memory    a file to be the guest's RAM ({@link VmmDriver#memoryFiles()}), or null for the VMM's own memory
 */
public record Launch(String id, MachineSpec spec, GuestImage image, Path workDir, List<AttachedDrive> drives,
                     Console console, Fd vmmOutput, Supplier<String> vmmState, Path restoreState,
                     MemoryFile memory) {

    /**
     * Spawns {@code command} under the lifeline: stdout to {@code stdout} (null: the VMM output socket), stderr to
     * the VMM output socket, {@code extraFds} as the fds numbered {@link VmmProcess#childFdOf}(0), (1)…; if the JVM
     * dies, the watcher kills the VMM, runs {@code onJvmDeath} (shell commands; may be empty) and removes the work dir.
     */
    public VmmProcess spawn(List<String> command, Spawn.Redirect stdout, List<Fd> extraFds, String onJvmDeath) {
        return spawn(command, stdout, extraFds, onJvmDeath, false);
    }

    /**
     * {@link #spawn(List, Spawn.Redirect, List, String)} for a command that forks the VMM and exits ({@code forks}):
     * the driver then {@linkplain VmmProcess#adopt adopts} the VMM by its pid.
     */
    public VmmProcess spawn(List<String> command, Spawn.Redirect stdout, List<Fd> extraFds, String onJvmDeath, boolean forks) {
        Spawn.Redirect output = Spawn.Redirect.fd(vmmOutput);
        return VmmProcess.start(command, workDir, stdout != null ? stdout : output, output, extraFds, onJvmDeath, forks);
    }

    /**
     * A connected pair of unix stream sockets: Kiln's end as a channel (which parks virtual threads properly) and
     * the other as an fd to hand to the VMM. Made through a listening socket in the work dir, removed at once.
     */
    public SocketPair socketPair(String name) {
        return socketPair(workDir, name);
    }

    public static SocketPair socketPair(Path dir, String name) {
        Path path = dir.resolve(name + ".sock");
        try (ServerSocketChannel listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            listener.bind(UnixDomainSocketAddress.of(path));
            Fd theirs = UnixSocket.connect(path);
            try {
                return new SocketPair(listener.accept(), theirs);
            } catch (IOException | RuntimeException e) {
                theirs.close();
                throw e;
            }
        } catch (IOException e) {
            throw new KilnException("cannot make the socket pair " + path + ": " + e.getMessage(), e);
        } finally {
            try {
                Files.deleteIfExists(path);
            } catch (IOException ignored) {
                // the work dir goes at cleanup anyway
            }
        }
    }

    /** Kiln's end and the VMM's end of a socket pair; close {@code theirs} once the VMM has it. */
    public record SocketPair(SocketChannel ours, Fd theirs) {}

    /**
     * The guest's RAM as a file: {@code shared}, the guest's writes go to the file (a template being made);
     * else the file is mapped copy-on-write, so that every machine made from it shares the pages it only reads.
     */
    public record MemoryFile(Path file, boolean shared) {}
}
