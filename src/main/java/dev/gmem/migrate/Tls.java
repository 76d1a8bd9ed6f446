package dev.gmem.migrate;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.Collection;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * TLS 1.3 with certificates on both sides, through the JDK's own TLS: this side's key and
 * certificate chain (PEM files, or a PKCS#12 store) and the certificate authority that the peer's
 * certificate must chain to (PEM). A source asks every destination for its certificate; a
 * destination checks that the source's certificate names the host it connected to.
 */
public final class Tls {
    private Tls() {}

    /** TLS 1.3's suites, AES-128-GCM first: on hosts with AES-NI the cheapest per byte, and what a page stream needs. */
    static final String[] SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"};

    /** Where this side's identity comes from: PEM files ({@code cert}, {@code key}) or a PKCS#12 store ({@code p12}). */
    public record Identity(Path cert, Path key, Path p12, char[] password) {
        public static Identity pem(Path cert, Path key) {
            return new Identity(cert, key, null, new char[0]);
        }

        public static Identity pkcs12(Path p12, char[] password) {
            return new Identity(null, null, p12, password);
        }
    }

    /**
     * The context for one side: {@code identity} presented to the peer, {@code ca} trusted for the
     * peer's certificate.
     *
     * @throws IOException naming the file that cannot be read or is not what it should be
     */
    public static SSLContext context(Identity identity, Path ca) throws IOException {
        try {
            KeyStore keys = KeyStore.getInstance("PKCS12");
            char[] password;
            if (identity.p12() != null) {
                password = identity.password();
                try (InputStream in = Files.newInputStream(identity.p12())) {
                    keys.load(in, password);
                } catch (IOException e) {
                    throw new IOException(
                            identity.p12() + ": not a PKCS#12 store this password opens: " + e.getMessage(), e);
                }
            } else {
                password = new char[0];
                keys.load(null, null);
                keys.setKeyEntry("gmem", privateKey(identity.key()), password, certificates(identity.cert()));
            }
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(keys, password);
            KeyStore trust = KeyStore.getInstance("PKCS12");
            trust.load(null, null);
            int i = 0;
            for (Certificate c : certificates(ca)) trust.setCertificateEntry("ca-" + i++, c);
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(trust);
            SSLContext ctx = SSLContext.getInstance("TLSv1.3");
            ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
            return ctx;
        } catch (GeneralSecurityException e) {
            throw new IOException("TLS: " + e.getMessage(), e);
        }
    }

    private static Certificate[] certificates(Path pem) throws IOException {
        try (InputStream in = Files.newInputStream(pem)) {
            Collection<? extends Certificate> all =
                    CertificateFactory.getInstance("X.509").generateCertificates(in);
            if (all.isEmpty()) throw new IOException(pem + ": holds no certificate");
            return all.toArray(Certificate[]::new);
        } catch (java.security.cert.CertificateException e) {
            throw new IOException(pem + ": not a PEM certificate: " + e.getMessage(), e);
        }
    }

    /** A PKCS#8 private key in PEM ({@code BEGIN PRIVATE KEY}): RSA, EC or Ed25519. */
    private static PrivateKey privateKey(Path pem) throws IOException {
        String text = Files.readString(pem, StandardCharsets.US_ASCII);
        if (text.contains("BEGIN RSA PRIVATE KEY") || text.contains("BEGIN EC PRIVATE KEY"))
            throw new IOException(pem + ": a PKCS#1 or SEC1 key; convert it to PKCS#8 with"
                    + " 'openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY8'");
        if (text.contains("BEGIN ENCRYPTED PRIVATE KEY"))
            throw new IOException(pem + ": an encrypted key; give an unencrypted PKCS#8 key or a PKCS#12 store");
        int b = text.indexOf("-----BEGIN PRIVATE KEY-----"), e = text.indexOf("-----END PRIVATE KEY-----");
        if (b < 0 || e < b) throw new IOException(pem + ": no PEM private key (BEGIN PRIVATE KEY) in it");
        byte[] der;
        try {
            der = Base64.getMimeDecoder().decode(text.substring(b + 27, e));
        } catch (IllegalArgumentException x) {
            throw new IOException(pem + ": its private key is not base64", x);
        }
        for (String alg : new String[] {"RSA", "EC", "Ed25519", "RSASSA-PSS"}) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(new PKCS8EncodedKeySpec(der));
            } catch (GeneralSecurityException notThis) {
                // the next algorithm
            }
        }
        throw new IOException(pem + ": a private key of none of RSA, EC, Ed25519");
    }
}
