package dev.kiln.os;

import dev.kiln.KilnException;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * An immutable description of a child process, started with {@code posix_spawnp} because
 * {@link ProcessBuilder} cannot hand a child any descriptor beyond 0–2 (QEMU's fd-backed chardevs and NICs, socket
 * pair cables and lifelines need that).
 *
 * <p>The child gets exactly: stdin/stdout/stderr as {@link Redirect redirected}, the {@link #extraFds()} as
 * descriptors {@code 3, 4, 5, …} in list order (see {@link #childFdOf}), and nothing else of the JVM's. It starts
 * with an empty signal mask and every signal at its default action, since the JVM blocks and handles signals
 * that an exec would otherwise pass on. A program name without a slash is searched on the JVM's own PATH, not on
 * {@link #environment()}'s.
 *
 * <p>Defaults: the JVM's environment, the JVM's working directory ({@code directory} null), stdin from {@code /dev/null} (a child reading the
 * JVM's stdin would steal it), stdout and stderr inherited, no extra descriptors, same session.
 */
public record Spawn(List<String> argv, Map<String, String> environment, Path directory,
                    Redirect stdin, Redirect stdout, Redirect stderr, List<Fd> extraFds, boolean newSession) {

    /** Where one of the child's standard streams goes. */
    public sealed interface Redirect {
        /** The child shares the JVM's descriptor. */
        record Inherit() implements Redirect {}

        record DevNull() implements Redirect {}

        /** For stdin, the file is read; for stdout and stderr it is appended to, created with mode 0600 if absent. */
        record File(Path path) implements Redirect {
            public File {
                Objects.requireNonNull(path, "path");
            }
        }

        /** The child gets a duplicate of {@code fd}; the caller keeps (and closes) its own. */
        record Descriptor(Fd fd) implements Redirect {
            public Descriptor {
                Objects.requireNonNull(fd, "fd");
            }
        }

        /** Only for stderr: the same open file as the child's stdout. */
        record SameAsStdout() implements Redirect {}

        static Redirect inherit() {
            return new Inherit();
        }

        static Redirect devNull() {
            return new DevNull();
        }

        static Redirect file(Path path) {
            return new File(path);
        }

        static Redirect fd(Fd fd) {
            return new Descriptor(fd);
        }

        static Redirect sameAsStdout() {
            return new SameAsStdout();
        }
    }

    private static final int SPAWN_SETSIGDEF = 0x04, SPAWN_SETSIGMASK = 0x08, SPAWN_SETSID = 0x80;
    /** glibc's posix_spawn_file_actions_t is 80 bytes and posix_spawnattr_t 336 on x86_64; leave headroom. */
    private static final long OPAQUE_SIZE = 512, SIGSET_SIZE = 128;
    /** Sources are parked at or above this number first, so no source is overwritten before it is moved. */
    private static final int FIRST_TEMPORARY_FD = 900;

    private static final MethodHandle SPAWNP = Libc.function("posix_spawnp",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS));
    private static final MethodHandle ACTIONS_INIT = Libc.function("posix_spawn_file_actions_init", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    private static final MethodHandle ACTIONS_DESTROY = Libc.function("posix_spawn_file_actions_destroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    private static final MethodHandle ADD_DUP2 = Libc.function("posix_spawn_file_actions_adddup2",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    private static final MethodHandle ADD_OPEN = Libc.function("posix_spawn_file_actions_addopen",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    private static final MethodHandle ADD_CHDIR = Libc.function("posix_spawn_file_actions_addchdir_np",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    private static final MethodHandle ADD_CLOSEFROM = Libc.function("posix_spawn_file_actions_addclosefrom_np",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle ATTR_INIT = Libc.function("posix_spawnattr_init", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    private static final MethodHandle ATTR_DESTROY = Libc.function("posix_spawnattr_destroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    private static final MethodHandle ATTR_SETFLAGS = Libc.function("posix_spawnattr_setflags",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_SHORT));
    private static final MethodHandle ATTR_SETSIGMASK = Libc.function("posix_spawnattr_setsigmask",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
    private static final MethodHandle ATTR_SETSIGDEFAULT = Libc.function("posix_spawnattr_setsigdefault",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));

    public Spawn {
        argv = List.copyOf(argv);
        if (argv.isEmpty()) throw new IllegalArgumentException("argv needs at least the program");
        environment = Map.copyOf(environment);
        Objects.requireNonNull(stdin, "stdin");
        Objects.requireNonNull(stdout, "stdout");
        Objects.requireNonNull(stderr, "stderr");
        if (stdin instanceof Redirect.SameAsStdout || stdout instanceof Redirect.SameAsStdout)
            throw new IllegalArgumentException("only stderr can be redirected to stdout");
        extraFds = List.copyOf(extraFds);
    }

    public static Spawn of(String... argv) {
        return of(Arrays.asList(argv));
    }

    public static Spawn of(List<String> argv) {
        return new Spawn(argv, System.getenv(), null, Redirect.devNull(), Redirect.inherit(), Redirect.inherit(),
                List.of(), false);
    }

    /** The number extra descriptor {@code index} has in the child. */
    public static int childFdOf(int index) {
        return 3 + index;
    }

    /** Replaces the whole environment. */
    public Spawn withEnvironment(Map<String, String> environment) {
        return new Spawn(argv, environment, directory, stdin, stdout, stderr, extraFds, newSession);
    }

    /** Adds or replaces one environment variable. */
    public Spawn withEnv(String name, String value) {
        Map<String, String> env = new LinkedHashMap<>(environment);
        env.put(name, value);
        return withEnvironment(env);
    }

    public Spawn withDirectory(Path directory) {
        return new Spawn(argv, environment, directory, stdin, stdout, stderr, extraFds, newSession);
    }

    public Spawn withStdin(Redirect stdin) {
        return new Spawn(argv, environment, directory, stdin, stdout, stderr, extraFds, newSession);
    }

    public Spawn withStdout(Redirect stdout) {
        return new Spawn(argv, environment, directory, stdin, stdout, stderr, extraFds, newSession);
    }

    public Spawn withStderr(Redirect stderr) {
        return new Spawn(argv, environment, directory, stdin, stdout, stderr, extraFds, newSession);
    }

    /** Replaces the extra descriptors; the i-th appears in the child as {@code 3 + i}. */
    public Spawn withExtraFds(Fd... fds) {
        return withExtraFds(List.of(fds));
    }

    public Spawn withExtraFds(List<Fd> fds) {
        return new Spawn(argv, environment, directory, stdin, stdout, stderr, fds, newSession);
    }

    /** Whether the child calls setsid, leading its own session and process group (so the group can be killed). */
    public Spawn withNewSession(boolean newSession) {
        return new Spawn(argv, environment, directory, stdin, stdout, stderr, extraFds, newSession);
    }

    /**
     * Starts the child. The descriptors named here must stay open until this returns. The returned process must be
     * waited for ({@link SpawnedProcess#waitFor()} or {@link SpawnedProcess#onExit()}), or it stays a zombie.
     *
     * @throws KilnException naming the program if it cannot be started (missing, not executable, bad directory…)
     */
    public SpawnedProcess start() {
        List<Redirect> stdio = List.of(stdin, stdout, stderr);
        List<Fd> sources = new ArrayList<>();
        for (Redirect r : stdio) if (r instanceof Redirect.Descriptor(Fd fd)) sources.add(fd);
        sources.addAll(extraFds);
        int[] sourceNumbers = sources.stream().mapToInt(Fd::number).toArray();
        int firstTemporary = Math.max(FIRST_TEMPORARY_FD, Arrays.stream(sourceNumbers).max().orElse(0) + 1);
        long limit = Posix.openFileLimit();
        if (firstTemporary + (long) sourceNumbers.length > limit)
            throw new KilnException("cannot spawn " + argv.getFirst() + ": passing " + sourceNumbers.length
                    + " descriptors needs numbers up to " + (firstTemporary + sourceNumbers.length - 1)
                    + ", but the soft RLIMIT_NOFILE is " + limit + "; raise it (ulimit -n)");

        try (Arena arena = Arena.ofConfined()) {
            MemorySegment actions = arena.allocate(OPAQUE_SIZE, 16);
            MemorySegment attr = arena.allocate(OPAQUE_SIZE, 16);
            ok(Libc.plain(() -> (int) ACTIONS_INIT.invokeExact(actions)), "posix_spawn_file_actions_init");
            try {
                ok(Libc.plain(() -> (int) ATTR_INIT.invokeExact(attr)), "posix_spawnattr_init");
                try {
                    addFileActions(arena, actions, sourceNumbers, firstTemporary);
                    setAttributes(arena, attr);
                    return spawn(arena, actions, attr);
                } finally {
                    Libc.plain(() -> (int) ATTR_DESTROY.invokeExact(attr));
                }
            } finally {
                Libc.plain(() -> (int) ACTIONS_DESTROY.invokeExact(actions));
            }
        }
    }

    private void addFileActions(Arena arena, MemorySegment actions, int[] sourceNumbers, int firstTemporary) {
        // dup2 clears FD_CLOEXEC on its target, but dup2(x, x) does nothing, so every source moves twice.
        for (int k = 0; k < sourceNumbers.length; k++) dup2(actions, sourceNumbers[k], firstTemporary + k);
        int temporary = firstTemporary;
        List<Redirect> stdio = List.of(stdin, stdout, stderr);
        for (int target = 0; target < 3; target++) {
            switch (stdio.get(target)) {
                case Redirect.Inherit _ -> {}
                case Redirect.DevNull _ -> open(arena, actions, target, Path.of("/dev/null"), target == 0 ? Posix.O_RDONLY : Posix.O_WRONLY, 0);
                case Redirect.File(Path path) -> open(arena, actions, target, path,
                        target == 0 ? Posix.O_RDONLY : Posix.O_WRONLY | Posix.O_CREAT | Posix.O_APPEND, 0600);
                case Redirect.Descriptor _ -> dup2(actions, temporary++, target);
                case Redirect.SameAsStdout _ -> dup2(actions, 1, 2);
            }
        }
        for (int i = 0; i < extraFds.size(); i++) dup2(actions, temporary++, childFdOf(i));
        int firstToClose = childFdOf(extraFds.size());
        ok(Libc.plain(() -> (int) ADD_CLOSEFROM.invokeExact(actions, firstToClose)),
                "posix_spawn_file_actions_addclosefrom_np(" + firstToClose + ")");
        if (directory != null) {
            MemorySegment dir = arena.allocateFrom(directory.toString());
            ok(Libc.plain(() -> (int) ADD_CHDIR.invokeExact(actions, dir)), "posix_spawn_file_actions_addchdir_np(" + directory + ")");
        }
    }

    private static void dup2(MemorySegment actions, int from, int to) {
        ok(Libc.plain(() -> (int) ADD_DUP2.invokeExact(actions, from, to)), "posix_spawn_file_actions_adddup2(" + from + ", " + to + ")");
    }

    private static void open(Arena arena, MemorySegment actions, int target, Path path, int flags, int mode) {
        MemorySegment cPath = arena.allocateFrom(path.toAbsolutePath().toString());
        ok(Libc.plain(() -> (int) ADD_OPEN.invokeExact(actions, target, cPath, flags, mode)),
                "posix_spawn_file_actions_addopen(" + target + ", " + path + ")");
    }

    private void setAttributes(Arena arena, MemorySegment attr) {
        MemorySegment emptyMask = arena.allocate(SIGSET_SIZE, 8);
        // Set the bits of signals 1..64 directly: sigaddset refuses glibc's internal signals 32 and 33.
        MemorySegment allSignals = arena.allocate(SIGSET_SIZE, 8);
        allSignals.set(JAVA_LONG, 0, -1L);
        short flags = (short) (SPAWN_SETSIGMASK | SPAWN_SETSIGDEF | (newSession ? SPAWN_SETSID : 0));
        ok(Libc.plain(() -> (int) ATTR_SETSIGMASK.invokeExact(attr, emptyMask)), "posix_spawnattr_setsigmask");
        ok(Libc.plain(() -> (int) ATTR_SETSIGDEFAULT.invokeExact(attr, allSignals)), "posix_spawnattr_setsigdefault");
        ok(Libc.plain(() -> (int) ATTR_SETFLAGS.invokeExact(attr, flags)), "posix_spawnattr_setflags(0x" + Integer.toHexString(flags) + ")");
    }

    private SpawnedProcess spawn(Arena arena, MemorySegment actions, MemorySegment attr) {
        MemorySegment argvArray = cStrings(arena, argv);
        MemorySegment envArray = cStrings(arena, environment.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue()).toList());
        MemorySegment program = arena.allocateFrom(argv.getFirst());
        MemorySegment pid = arena.allocate(JAVA_INT);
        // posix_spawnp returns the error number itself; glibc reports a failed exec (e.g. ENOENT) here too, after
        // reaping the failed child, so no zombie is left behind.
        int error = (int) Libc.plain(() -> (int) SPAWNP.invokeExact(pid, program, actions, attr, argvArray, envArray));
        if (error != 0)
            throw new KilnException("cannot start program '" + argv.getFirst() + "': posix_spawnp failed: " + Libc.describe(error)
                    + " (" + this + ")");
        return new SpawnedProcess(pid.get(JAVA_INT, 0), argv);
    }

    private static MemorySegment cStrings(Arena arena, List<String> strings) {
        MemorySegment array = arena.allocate(ADDRESS, strings.size() + 1);
        for (int i = 0; i < strings.size(); i++) array.setAtIndex(ADDRESS, i, arena.allocateFrom(strings.get(i)));
        array.setAtIndex(ADDRESS, strings.size(), MemorySegment.NULL);
        return array;
    }

    private static void ok(long error, String what) {
        if (error != 0) throw Libc.failure(what, (int) error);
    }

    /** Leaves the environment's values out: they may hold secrets and would flood logs. */
    @Override
    public String toString() {
        return "Spawn[argv=" + argv + (directory == null ? "" : ", directory=" + directory) + ", environment="
                + environment.size() + " variables, stdin=" + stdin + ", stdout=" + stdout + ", stderr=" + stderr
                + ", extraFds=" + extraFds + (newSession ? ", newSession" : "") + "]";
    }
}
