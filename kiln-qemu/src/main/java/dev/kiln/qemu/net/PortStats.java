package dev.kiln.qemu.net;

/**
 * What a {@link Network}'s switch saw on one port, counted since the port was made.
 *
 * @param framesIn         frames the machine sent into the switch
 * @param bytesIn          their bytes (Ethernet frames without the length prefix)
 * @param framesOut        frames the switch wrote to the machine in full
 * @param bytesOut         their bytes
 * @param droppedByFault   frames from or to this port dropped on purpose: a partition (counted at the receiving
 *                         port), random loss, or the link being down
 * @param droppedQueueFull frames for this port dropped because its output queue was full (the machine did not
 *                         read fast enough)
 * @param connected        whether the switch still holds the port's socket
 * @param disconnectReason why the switch let go of the socket (the machine closed it, bad framing, the port was
 *                         closed…), or null while connected
 */
public record PortStats(long framesIn, long bytesIn, long framesOut, long bytesOut,
                        long droppedByFault, long droppedQueueFull, boolean connected, String disconnectReason) {
}
