package dev.gmem.bench;

import dev.gmem.store.StoreClient;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;

/**
 * A real S3 server on loopback for the tests and {@code gmem bench store}: S3Proxy (the build
 * copies its jar to {@code target/s3proxy/s3proxy.jar}) as its own process, on a free port, with its
 * filesystem back end in a directory of the caller's. Closing it kills and reaps it.
 */
public final class S3Server implements AutoCloseable {
    public static final String IDENTITY = "gmem-test";
    public static final String CREDENTIAL = "gmem-test-secret";

    private final Process process;
    private final URI endpoint;
    private final Path data;

    private S3Server(Process process, URI endpoint, Path data) {
        this.process = process;
        this.endpoint = endpoint;
        this.data = data;
    }

    /** The S3Proxy jar beside this build, or null. */
    public static Path jar() {
        for (Path p : List.of(
                Path.of("target", "s3proxy", "s3proxy.jar"),
                Path.of(System.getProperty("user.dir"), "target", "s3proxy", "s3proxy.jar"))) {
            if (Files.isRegularFile(p)) return p.toAbsolutePath();
        }
        return null;
    }

    /** Starts S3Proxy with its objects under {@code dir}, and waits until it answers (30 s at most). */
    public static S3Server start(Path dir) throws IOException {
        Path jar = jar();
        if (jar == null)
            throw new IOException("no S3Proxy jar at target/s3proxy/s3proxy.jar (the build copies it there)");
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        Path data = Files.createDirectories(dir.resolve("s3-data"));
        Path props = dir.resolve("s3proxy.properties");
        Files.writeString(
                props,
                String.join(
                        "\n",
                        "s3proxy.endpoint=http://127.0.0.1:" + port,
                        "s3proxy.authorization=aws-v2-or-v4",
                        "s3proxy.identity=" + IDENTITY,
                        "s3proxy.credential=" + CREDENTIAL,
                        "jclouds.provider=filesystem",
                        "jclouds.filesystem.basedir=" + data,
                        ""));
        Process p = new ProcessBuilder(
                        ProcessHandle.current().info().command().orElse("java"),
                        "-Xmx256m",
                        "-jar",
                        jar.toString(),
                        "--properties",
                        props.toString())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .redirectErrorStream(true)
                .redirectOutput(dir.resolve("s3proxy.log").toFile())
                .start();
        S3Server server = new S3Server(p, URI.create("http://127.0.0.1:" + port), data);
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (true) {
            try {
                new java.net.Socket("127.0.0.1", port).close();
                return server;
            } catch (IOException e) {
                if (!p.isAlive() || System.nanoTime() > deadline) {
                    server.close();
                    throw new IOException("S3Proxy did not start (see " + dir.resolve("s3proxy.log") + ")");
                }
                try {
                    Thread.sleep(50);
                } catch (InterruptedException x) {
                    Thread.currentThread().interrupt();
                    server.close();
                    throw new IOException("interrupted");
                }
            }
        }
    }

    public URI endpoint() {
        return endpoint;
    }

    /** Where the filesystem back end keeps bucket {@code bucket}'s objects (for tests that damage one). */
    public Path bucketDir(String bucket) {
        return data.resolve(bucket);
    }

    /** Client options for this server, with its credentials. */
    public StoreClient.Options options() {
        return StoreClient.Options.of(endpoint)
                .withCredentials(StaticCredentialsProvider.create(AwsBasicCredentials.create(IDENTITY, CREDENTIAL)));
    }

    @Override
    public void close() {
        process.destroy();
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS))
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}
