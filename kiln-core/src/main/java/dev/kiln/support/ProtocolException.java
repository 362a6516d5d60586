package dev.kiln.support;

import dev.kiln.KilnException;

/** A peer (QMP, the guest agent, a VMM API) sent something that breaks its protocol. */
public class ProtocolException extends KilnException {
    public ProtocolException(String message) {
        super(message);
    }

    public ProtocolException(String message, Throwable cause) {
        super(message, cause);
    }
}
