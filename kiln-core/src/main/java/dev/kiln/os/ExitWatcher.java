package dev.kiln.os;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One JVM-wide platform thread that waits, in {@code poll(2)}, for the pidfds of {@link PidFd} to turn readable
 * (their process exited) and runs each one's action once. Started with the first pidfd; an eventfd wakes it when
 * the set changes. A platform thread because poll blocks in native code, which would pin a virtual thread's carrier.
 */
final class ExitWatcher {
    private static final Logger LOG = LoggerFactory.getLogger(ExitWatcher.class);
    private static final Object LOCK = new Object();
    private static final Map<Fd, Runnable> WATCHED = new LinkedHashMap<>(); // guarded by LOCK
    private static Fd wakeUp;                                              // guarded by LOCK

    private ExitWatcher() {}

    static void watch(Fd pidfd, Runnable onExit) {
        synchronized (LOCK) {
            WATCHED.put(pidfd, onExit);
            if (wakeUp == null) {
                wakeUp = Posix.eventFd();
                Thread.ofPlatform().daemon().name("kiln-exit-watcher").start(ExitWatcher::loop);
            } else {
                Posix.signalEventFd(wakeUp);
            }
        }
    }

    /** Stops watching (before the pidfd is closed, so the loop never polls a closed number). */
    static void forget(Fd pidfd) {
        synchronized (LOCK) {
            if (WATCHED.remove(pidfd) != null) Posix.signalEventFd(wakeUp);
        }
    }

    private static void loop() {
        try (Poller poller = new Poller(); Arena arena = Arena.ofConfined()) {
            MemorySegment counter = arena.allocate(8);
            while (true) {
                List<Fd> fds;
                synchronized (LOCK) {
                    poller.read(wakeUp.number(), counter); // empties the counter; -EAGAIN when it was not bumped
                    WATCHED.keySet().removeIf(fd -> !fd.isOpen()); // closed without forget(): nothing left to watch
                    fds = new ArrayList<>(WATCHED.keySet());
                    poller.clear();
                    poller.add(wakeUp.number(), Poller.IN);
                    for (Fd fd : fds) poller.add(fd.number(), Poller.IN);
                }
                if (poller.poll(-1) == 0) continue;
                List<Runnable> exited = new ArrayList<>();
                synchronized (LOCK) {
                    for (int i = 0; i < fds.size(); i++) {
                        if (poller.ready(i + 1) != 0) {
                            Runnable action = WATCHED.remove(fds.get(i));
                            if (action != null) exited.add(action);
                        }
                    }
                }
                for (Runnable action : exited) {
                    try {
                        action.run();
                    } catch (RuntimeException e) {
                        LOG.warn("an action on a process's exit failed", e);
                    }
                }
            }
        } catch (RuntimeException | Error e) {
            LOG.error("the pidfd exit watcher stopped; exits of processes Kiln did not start are no longer noticed", e);
        }
    }
}
