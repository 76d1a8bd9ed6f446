package dev.gmem.bench;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.Key;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Certificates for TLS tests and benchmarks, made with the JDK's keytool (EC P-256, valid two days): a CA, a
 * server certificate naming {@code serverNames} (IP addresses and DNS names), and a client
 * certificate, each as a PKCS#12 store and as PEM files ({@code NAME.crt}, {@code NAME.key}, and
 * {@code ca.pem}); a second, unrelated CA signs a {@code rogue} client.
 */
public final class TestCerts {
    public static final String PASSWORD = "gmem-test";

    public final Path dir;

    private TestCerts(Path dir) {
        this.dir = dir;
    }

    public Path ca() {
        return dir.resolve("ca.pem");
    }

    public Path cert(String name) {
        return dir.resolve(name + ".crt");
    }

    public Path key(String name) {
        return dir.resolve(name + ".key");
    }

    public Path p12(String name) {
        return dir.resolve(name + ".p12");
    }

    public Path passwordFile() {
        return dir.resolve("password");
    }

    /** Makes them all in {@code dir}; {@code serverNames} such as "ip:10.0.0.1", "dns:localhost". */
    public static TestCerts make(Path dir, String... serverNames) throws Exception {
        Files.createDirectories(dir);
        TestCerts t = new TestCerts(dir);
        Files.writeString(t.passwordFile(), PASSWORD + "\n");
        // each keytool call is a JVM's start, so the independent ones run side by side: the two CAs, then the three
        // certificates they sign
        String[] cas = {"ca", "rogue-ca"};
        dev.gmem.util.Parallel.forEach(2, "keytool", 2, i -> t.ca(cas[i]));
        String[][] signed = {
            {"server", "ca", "serverAuth", String.join(",", serverNames)},
            {"client", "ca", "clientAuth", null},
            {"rogue", "rogue-ca", "clientAuth", null}
        };
        dev.gmem.util.Parallel.forEach(
                3, "keytool", 3, i -> t.signed(signed[i][0], signed[i][1], signed[i][2], signed[i][3]));
        t.keytool(
                "-exportcert",
                "-rfc",
                "-alias",
                "ca",
                "-keystore",
                t.p12("ca").toString(),
                "-storepass",
                PASSWORD,
                "-file",
                t.ca().toString());
        for (String n : new String[] {"server", "client", "rogue"}) t.pem(n);
        return t;
    }

    private void ca(String name) throws IOException {
        keyPair(name, "ca", p12(name).toString(), "-ext", "bc:c");
        keytool(
                "-exportcert",
                "-rfc",
                "-alias",
                "ca",
                "-keystore",
                p12(name).toString(),
                "-storepass",
                PASSWORD,
                "-file",
                dir.resolve(name + ".pem").toString());
    }

    private void signed(String name, String ca, String usage, String names) throws IOException {
        String store = p12(name).toString();
        keyPair(name, name, store);
        Path csr = dir.resolve(name + ".csr"), crt = dir.resolve(name + ".signed");
        keytool("-certreq", "-alias", name, "-keystore", store, "-storepass", PASSWORD, "-file", csr.toString());
        List<String> gen = new ArrayList<>(List.of(
                "-gencert",
                "-alias",
                "ca",
                "-keystore",
                p12(ca).toString(),
                "-storepass",
                PASSWORD,
                "-infile",
                csr.toString(),
                "-outfile",
                crt.toString(),
                "-rfc",
                "-validity",
                "2",
                "-ext",
                "eku=" + usage));
        if (names != null) gen.addAll(List.of("-ext", "san=" + names));
        keytool(gen.toArray(String[]::new));
        keytool(
                "-importcert",
                "-alias",
                "ca",
                "-keystore",
                store,
                "-storepass",
                PASSWORD,
                "-file",
                dir.resolve(ca + ".pem").toString(),
                "-noprompt");
        keytool("-importcert", "-alias", name, "-keystore", store, "-storepass", PASSWORD, "-file", crt.toString());
    }

    /** An EC P-256 key pair under {@code alias} in the PKCS#12 store {@code store}, named CN=gmem-test-NAME. */
    private void keyPair(String name, String alias, String store, String... more) throws IOException {
        List<String> args = new ArrayList<>(List.of(
                "-genkeypair",
                "-alias",
                alias,
                "-keyalg",
                "EC",
                "-groupname",
                "secp256r1",
                "-dname",
                "CN=gmem-test-" + name,
                "-validity",
                "2",
                "-keystore",
                store,
                "-storetype",
                "PKCS12",
                "-storepass",
                PASSWORD,
                "-keypass",
                PASSWORD));
        args.addAll(List.of(more));
        keytool(args.toArray(String[]::new));
    }

    /** NAME.key (PKCS#8) and NAME.crt (the chain) from the store. */
    private void pem(String name) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(p12(name))) {
            ks.load(in, PASSWORD.toCharArray());
        }
        Key key = ks.getKey(name, PASSWORD.toCharArray());
        Files.writeString(key(name), pem("PRIVATE KEY", key.getEncoded()));
        StringBuilder chain = new StringBuilder();
        for (Certificate c : ks.getCertificateChain(name)) chain.append(pem("CERTIFICATE", c.getEncoded()));
        Files.writeString(cert(name), chain.toString());
    }

    private static String pem(String type, byte[] der) {
        return "-----BEGIN " + type + "-----\n"
                + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII))
                        .encodeToString(der)
                + "\n-----END " + type + "-----\n";
    }

    private void keytool(String... args) throws IOException {
        Path java = Path.of(ProcessHandle.current().info().command().orElseThrow());
        List<String> cmd = new ArrayList<>();
        cmd.add(java.resolveSibling("keytool").toString());
        // a short-lived JVM: the quick compiler alone and the serial collector start it in some 60 % of the time
        cmd.addAll(List.of("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        boolean done;
        try {
            done = p.waitFor(60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
            throw new java.io.InterruptedIOException("interrupted while keytool ran");
        }
        if (!done) {
            p.destroyForcibly();
            throw new IOException("keytool timed out: " + cmd);
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (p.exitValue() != 0) throw new IOException("keytool failed: " + cmd + ": " + out);
    }
}
