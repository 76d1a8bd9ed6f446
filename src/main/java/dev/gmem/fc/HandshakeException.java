package dev.gmem.fc;

import java.io.IOException;

/** A Firecracker handshake that cannot be served: the message names the field or the descriptor at fault. The session ends; the handler goes on. */
public final class HandshakeException extends IOException {
    private static final long serialVersionUID = 1L;

    public HandshakeException(String problem) {
        super("handshake refused: " + problem);
    }
}
