package dev.kiln.vmm;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.ExecRequest;
import dev.kiln.GuestException;
import dev.kiln.KilnException;
import dev.kiln.agent.QgaGuest;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;

import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;

/**
 * Gives a restored guest — the saved machine to the byte — the identity of the machine it now is, through its agent:
 * the host's clock (it stood still while saved), this machine's hostname, a new machine-id where the image has one, the
 * MAC of each NIC as this machine's VMM has it, and host randomness mixed into its RNG. Files are written with the
 * agent's own calls, which fork nothing in the guest: on a restored guest under TCG, whose translated code is all
 * gone, each process started costs from a tenth of a second (busybox) to half a second (Debian). Commands run: {@code
 * date}, and {@code ip} when a MAC changes.
 *
 * <p>The kernel's RNG: on QEMU's PC machines (q35) the VM generation id changes, and the kernel reseeds at once. Else
 * the bytes written to {@code /dev/urandom} enter its input pool, and its generator reseeds from
 * that pool within its reseed interval (half the guest's uptime while it is under two minutes, so a second or a few
 * for a template saved right after boot; a minute later on). Until then clones draw the same random numbers: a
 * machine that makes keys right after its restore should read {@code /dev/random} after a short wait, or reseed
 * itself (the {@code RNDRESEEDCRNG} ioctl).
 */
final class CloneIdentity {
    private static final SecureRandom RANDOM = new SecureRandom();

    private CloneIdentity() {}

    /** {@code macs}: pairs of the saved MAC and this machine's, for each NIC whose MAC differs. */
    static void apply(QgaGuest agent, String hostname, List<String[]> macs, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        setClock(agent, deadline);
        write(agent, "/proc/sys/kernel/hostname", hostname + "\n", deadline);
        if (exists(agent, "/etc/hostname", deadline)) write(agent, "/etc/hostname", hostname + "\n", deadline);
        if (exists(agent, "/etc/machine-id", deadline)) {
            write(agent, "/etc/machine-id", HexFormat.of().formatHex(RANDOM.generateSeed(16)) + "\n", deadline);
        }
        write(agent, "/dev/urandom", RANDOM.generateSeed(64), deadline);
        if (!macs.isEmpty()) setMacs(agent, macs, deadline);
    }

    /**
     * {@code date -s}, the one command always run: guest-set-time would also run {@code hwclock -w}, which waits for
     * the RTC's next second (util-linux) and takes seconds on a restored guest under TCG. Whole seconds, rounded; the
     * clock is read back through the agent.
     */
    private static void setClock(QgaGuest agent, Deadline deadline) {
        Instant now = Instant.now();
        long seconds = now.getEpochSecond() + (now.getNano() >= 500_000_000 ? 1 : 0);
        agent.exec(ExecRequest.of("date", "-u", "-s", "@" + seconds).timeout(deadline.remaining()).build()).orThrow();
        long guest = agent.call("guest-get-time", null, deadline.remaining()).asLong();
        long off = Math.abs(guest - nanos(Instant.now()));
        if (off > 2_000_000_000L) throw new KilnException("the guest's clock is " + off / 1_000_000 + " ms off the host's after date -s");
    }

    private static void setMacs(QgaGuest agent, List<String[]> macs, Deadline deadline) {
        List<String> argv = new ArrayList<>(List.of("sh", "-c", SET_MACS, "kiln-set-macs"));
        for (String[] m : macs) {
            argv.add(m[0].toLowerCase(Locale.ROOT));
            argv.add(m[1].toLowerCase(Locale.ROOT));
        }
        agent.exec(ExecRequest.of(argv).timeout(deadline.remaining()).build()).orThrow();
    }

    /** Arguments: pairs of old and new MAC; each interface with an old one gets the new one. */
    private static final String SET_MACS = """
            while [ $# -ge 2 ]; do
                for n in /sys/class/net/*; do
                    read -r a < "$n/address" && [ "$a" = "$1" ] && { ip link set dev "${n##*/}" address "$2" || exit 1; }
                done
                shift 2
            done
            """;

    private static boolean exists(QgaGuest agent, String path, Deadline deadline) {
        long handle;
        try {
            handle = agent.call("guest-file-open", args().put("path", path).put("mode", "r"), deadline.remaining()).asLong();
        } catch (GuestException e) {
            return false;
        }
        agent.call("guest-file-close", args().put("handle", handle), deadline.remaining());
        return true;
    }

    private static void write(QgaGuest agent, String path, String text, Deadline deadline) {
        write(agent, path, text.getBytes(StandardCharsets.UTF_8), deadline);
    }

    private static void write(QgaGuest agent, String path, byte[] bytes, Deadline deadline) {
        long handle = agent.call("guest-file-open", args().put("path", path).put("mode", "w"), deadline.remaining()).asLong();
        try {
            agent.call("guest-file-write", args().put("handle", handle).put("buf-b64", Base64.getEncoder().encodeToString(bytes)),
                    deadline.remaining());
        } finally {
            agent.call("guest-file-close", args().put("handle", handle), deadline.remaining());
        }
    }

    private static ObjectNode args() {
        return JsonFramer.JSON.createObjectNode();
    }

    private static long nanos(Instant t) {
        return t.getEpochSecond() * 1_000_000_000L + t.getNano();
    }
}
