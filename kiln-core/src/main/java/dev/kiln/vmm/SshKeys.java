package dev.kiln.vmm;

import dev.kiln.KilnException;

import java.io.ByteArrayOutputStream;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.interfaces.ECPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.util.Base64;

/**
 * The SSH keys Kiln makes for a machine, with the JDK alone: ECDSA on NIST P-256, which OpenSSH reads both as a PKCS#8
 * private key and in its own public-key format, and which needs no extra provider on the client side.
 */
public final class SshKeys {
    private static final String ALGORITHM = "ecdsa-sha2-nistp256";

    private SshKeys() {}

    public static KeyPair generate() {
        try {
            KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
            g.initialize(new ECGenParameterSpec("secp256r1"));
            return g.generateKeyPair();
        } catch (GeneralSecurityException e) {
            throw new KilnException("cannot make an SSH key: " + e.getMessage(), e);
        }
    }

    /** The public key as an {@code authorized_keys} line: {@code ecdsa-sha2-nistp256 AAAA… comment}. */
    public static String openSsh(PublicKey key, String comment) {
        return ALGORITHM + " " + Base64.getEncoder().encodeToString(blob(key)) + (comment == null ? "" : " " + comment);
    }

    /** The key's SHA256 fingerprint, as {@code ssh-keygen -l} prints it. */
    public static String fingerprint(PublicKey key) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(blob(key));
            return "SHA256:" + Base64.getEncoder().withoutPadding().encodeToString(d);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The private key as PEM (PKCS#8), the form OpenSSH's sshd reads a host key in. */
    public static String pem(PrivateKey key) {
        return "-----BEGIN PRIVATE KEY-----\n" + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII))
                .encodeToString(key.getEncoded()) + "\n-----END PRIVATE KEY-----\n";
    }

    /** RFC 5656's wire form: the algorithm, the curve, the point uncompressed. */
    private static byte[] blob(PublicKey key) {
        if (!(key instanceof ECPublicKey ec) || ec.getParams().getCurve().getField().getFieldSize() != 256) {
            throw new IllegalArgumentException("only ECDSA P-256 keys are written here, got " + key.getAlgorithm());
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        string(out, ALGORITHM.getBytes(StandardCharsets.US_ASCII));
        string(out, "nistp256".getBytes(StandardCharsets.US_ASCII));
        byte[] point = new byte[65];
        point[0] = 4;
        fixed(ec.getW().getAffineX(), point, 1);
        fixed(ec.getW().getAffineY(), point, 33);
        string(out, point);
        return out.toByteArray();
    }

    private static void fixed(BigInteger v, byte[] into, int at) {
        byte[] b = v.toByteArray(); // big-endian, maybe with a sign byte or shorter than 32
        int n = Math.min(b.length, 32);
        System.arraycopy(b, b.length - n, into, at + 32 - n, n);
    }

    private static void string(ByteArrayOutputStream out, byte[] b) {
        out.write(b.length >>> 24);
        out.write(b.length >>> 16);
        out.write(b.length >>> 8);
        out.write(b.length);
        out.writeBytes(b);
    }
}
