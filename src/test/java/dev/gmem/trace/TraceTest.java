package dev.gmem.trace;

import static dev.gmem.cli.CliRunner.run;
import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.testing.Host;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/** A trace recorded by a real lazy restore, read back and drawn; damaged, cut-short and foreign traces refused in one line. */
class TraceTest {
    static final long SIZE = 32L << 20;

    @TempDir
    Path dir;

    Path recorded() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 5), dir.resolve("s.snap"), Codec.ZSTD);
        Path trace = dir.resolve("restore.trace");
        var r = run("restore", snap.toString(), "--mode", "lazy", "--verify", "--trace", trace.toString());
        assertThat(r.exit()).as(r.err()).isZero();
        return trace;
    }

    @Test
    void aLazyRestoreIsTracedAndDrawn() throws Exception {
        Path trace = recorded();
        Trace t = TraceFile.read(trace);
        assertThat(t.what()).contains("lazy restore of s.snap");
        assertThat(t.samples()).isNotEmpty();
        assertThat(t.readyMs()).isPositive();
        assertThat(t.populatedMs()).isGreaterThanOrEqualTo(t.readyMs());
        Trace.Sample previous = null;
        for (Trace.Sample s : t.samples()) {
            if (previous != null) {
                assertThat(s.ms()).isGreaterThanOrEqualTo(previous.ms());
                assertThat(s.faultPages() + s.prefetchPages())
                        .as("pages only accumulate")
                        .isGreaterThanOrEqualTo(previous.faultPages() + previous.prefetchPages());
            }
            assertThat(s.faultAroundPages()).isLessThanOrEqualTo(s.faultPages());
            previous = s;
        }
        Trace.Sample last = t.samples().get(t.samples().size() - 1);
        assertThat(last.faultPages() + last.prefetchPages())
                .as("every data page, by one path each")
                .isEqualTo(t.dataPages());
        assertThat(t.latencyCounts().stream().mapToLong(Long::longValue).sum()).isEqualTo(last.faults());

        for (String name : List.of("timeline.svg", "timeline.html")) {
            Path out = dir.resolve(name);
            var r = run("report", trace.toString(), "-o", out.toString());
            assertThat(r.exit()).as(r.err()).isZero();
            assertThat(r.out()).contains("drew lazy restore of s.snap");
            String text = Files.readString(out);
            String svg =
                    name.endsWith(".svg") ? text : text.substring(text.indexOf("<svg"), text.indexOf("</svg>") + 6);
            Document d = DocumentBuilderFactory.newInstance()
                    .newDocumentBuilder()
                    .parse(new java.io.ByteArrayInputStream(svg.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
            assertThat(d.getDocumentElement().getTagName()).isEqualTo("svg");
            assertThat(byClass(d, "polygon", "path-")).as("the four paths").hasSize(4);
            assertThat(byClass(d, "line", "marker"))
                    .as("ready and fully resident")
                    .hasSize(2);
            assertThat(byClass(d, "rect", "latency")).hasSize(t.latencyCounts().size());
        }
    }

    @Test
    void damagedCutShortAndForeignTracesAreRefusedInOneLine() throws Exception {
        Path trace = recorded();
        List<String> lines = Files.readAllLines(trace);
        Path cut = Files.write(dir.resolve("cut.trace"), lines.subList(0, lines.size() - 1));
        Path v2 = Files.write(dir.resolve("v2.trace"), replaceFirst(lines, "\"version\":1", "\"version\":2"));
        Path garbage = Files.write(dir.resolve("garbage.trace"), replaceLine(lines, 1, "[1,2,three]"));
        Path snapshot = dir.resolve("s.snap");
        Path empty = Files.createFile(dir.resolve("empty.trace"));
        List<String> noBounds = new ArrayList<>(lines);
        noBounds.set(
                noBounds.size() - 1,
                noBounds.get(noBounds.size() - 1)
                        .replaceAll("\"latency_bounds_us\":\\[[^]]*]", "\"latency_bounds_us\":[]")
                        .replaceAll("\"latency_counts\":\\[[^]]*]", "\"latency_counts\":[1]"));
        Path bounds = Files.write(dir.resolve("bounds.trace"), noBounds);
        record Case(Path file, String says) {}
        for (Case c : List.of(
                new Case(cut, "cut short after"),
                new Case(v2, "version 2; this gmem reads version 1"),
                new Case(garbage, "line 2 is not JSON"),
                new Case(snapshot, "not a gmem trace"),
                new Case(empty, "empty"))) {
            var r = run(
                    "report", c.file().toString(), "-o", dir.resolve("x.svg").toString());
            assertThat(r.exit()).as(r.err()).isEqualTo(4);
            assertThat(r.err().strip().lines()).hasSize(1);
            assertThat(r.err()).contains(c.file().getFileName().toString()).contains(c.says());
            assertThat(dir.resolve("x.svg")).doesNotExist();
        }
        assertThat(run("report", trace.toString(), "-o", dir.resolve("x.png").toString())
                        .exit())
                .isEqualTo(2);
    }

    /** --trace is an output like any other: never the snapshot it restores, and refused before the restore starts. */
    @Test
    void aTraceNeverReplacesItsOwnSnapshot() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", 4L << 20, 6), dir.resolve("s.snap"), Codec.NONE);
        byte[] before = Files.readAllBytes(snap);
        var r = run("restore", snap.toString(), "--mode", "lazy", "--trace", snap.toString());
        assertThat(r.exit()).isEqualTo(1);
        assertThat(r.err().strip().lines()).hasSize(1);
        assertThat(r.err()).contains("is also the input");
        assertThat(r.out()).as("refused before the restore").isEmpty();
        assertThat(Files.readAllBytes(snap)).isEqualTo(before);
        var missingDir = run(
                "restore",
                snap.toString(),
                "--mode",
                "lazy",
                "--trace",
                dir.resolve("no/such/dir/t.trace").toString());
        assertThat(missingDir.exit()).isEqualTo(1);
        assertThat(missingDir.err()).contains("does not exist");
        assertThat(missingDir.out()).isEmpty();
    }

    private static List<Element> byClass(Document d, String tag, String classPrefix) {
        NodeList all = d.getElementsByTagName(tag);
        List<Element> out = new ArrayList<>();
        for (int i = 0; i < all.getLength(); i++) {
            Element e = (Element) all.item(i);
            if (e.getAttribute("class").startsWith(classPrefix)) out.add(e);
        }
        return out;
    }

    private static List<String> replaceFirst(List<String> lines, String from, String to) {
        List<String> out = new ArrayList<>(lines);
        out.set(0, out.get(0).replace(from, to));
        return out;
    }

    private static List<String> replaceLine(List<String> lines, int index, String with) {
        List<String> out = new ArrayList<>(lines);
        out.set(index, with);
        return out;
    }
}
