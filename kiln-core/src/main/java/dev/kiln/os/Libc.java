package dev.kiln.os;

import dev.kiln.KilnException;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/** Binding glue shared by the package: symbol lookup, errno capture and error messages. */
final class Libc {
    static final int EINTR = 4, ECHILD = 10, ESRCH = 3, EISCONN = 106;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout STATE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = STATE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final MethodHandle STRERRORNAME = function("strerrorname_np", FunctionDescriptor.of(ADDRESS, JAVA_INT));
    private static final MethodHandle STRERRORDESC = function("strerrordesc_np", FunctionDescriptor.of(ADDRESS, JAVA_INT));
    private static final MethodHandle SIGABBREV = function("sigabbrev_np", FunctionDescriptor.of(ADDRESS, JAVA_INT));

    private Libc() {}

    /** A downcall whose first parameter is the segment that receives errno. */
    @SuppressWarnings("restricted")
    static MethodHandle withErrno(String name, FunctionDescriptor descriptor, Linker.Option... extra) {
        Linker.Option[] options = new Linker.Option[extra.length + 1];
        options[0] = Linker.Option.captureCallState("errno");
        System.arraycopy(extra, 0, options, 1, extra.length);
        return LINKER.downcallHandle(symbol(name), descriptor, options);
    }

    /** A downcall for functions that return an error number instead of setting errno. */
    @SuppressWarnings("restricted")
    static MethodHandle function(String name, FunctionDescriptor descriptor) {
        return LINKER.downcallHandle(symbol(name), descriptor);
    }

    private static MemorySegment symbol(String name) {
        return LINKER.defaultLookup().find(name).orElseThrow(() -> new KilnException(
                "the C library has no symbol " + name + "; Kiln needs glibc 2.34 or newer on Linux"));
    }

    interface ErrnoCall {
        long invoke(MemorySegment errnoState) throws Throwable;
    }

    interface Call {
        long invoke() throws Throwable;
    }

    /** Runs a call that returns -1 and sets errno on failure; returns its result, or -errno on failure. */
    static long call(ErrnoCall call) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(STATE);
            long result = call.invoke(state);
            return result == -1 ? -(int) ERRNO.get(state, 0L) : result;
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new KilnException("native call failed: " + t, t);
        }
    }

    /** Like {@link #call} but repeats the call while it is interrupted by a signal (EINTR). */
    static long callRetrying(ErrnoCall call) {
        long result;
        do {
            result = call(call);
        } while (result == -EINTR);
        return result;
    }

    static long plain(Call call) {
        try {
            return call.invoke();
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new KilnException("native call failed: " + t, t);
        }
    }

    /** Throws unless {@code result} (as returned by {@link #call}) is non-negative. */
    static long check(long result, String what) {
        if (result < 0) throw failure(what, (int) -result);
        return result;
    }

    static KilnException failure(String what, int errno) {
        return new KilnException(what + " failed: " + describe(errno));
    }

    /** "ENOENT (No such file or directory)". */
    static String describe(int errno) {
        String name = string(plain(() -> ((MemorySegment) STRERRORNAME.invokeExact(errno)).address()));
        String desc = string(plain(() -> ((MemorySegment) STRERRORDESC.invokeExact(errno)).address()));
        return (name == null ? "errno " + errno : name) + " (" + (desc == null ? "unknown error" : desc) + ")";
    }

    /** "SIGKILL", or "signal 77" for numbers the C library has no name for. */
    static String signalName(int signal) {
        String abbrev = string(plain(() -> ((MemorySegment) SIGABBREV.invokeExact(signal)).address()));
        return abbrev == null ? "signal " + signal : "SIG" + abbrev;
    }

    @SuppressWarnings("restricted")
    private static String string(long address) {
        return address == 0 ? null : MemorySegment.ofAddress(address).reinterpret(4096).getString(0);
    }
}
