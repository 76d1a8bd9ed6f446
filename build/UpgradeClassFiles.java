import java.io.IOException;
import java.lang.classfile.ClassFile;
import java.lang.classfile.ClassFileVersion;
import java.lang.classfile.ClassHierarchyResolver;
import java.lang.classfile.ClassModel;
import java.lang.classfile.ClassTransform;
import java.lang.classfile.CodeTransform;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;
import java.util.zip.ZipOutputStream;

/**
 * A build step of gmem's launcher, run as a single-file program ({@code java UpgradeClassFiles.java
 * JAR...}): rewrites the class files of each JAR that are older than Java 6 (version 50) as Java 8
 * class files with stack maps, the same bytecode otherwise, through the JDK's own
 * {@code java.lang.classfile}. The JDK's ahead-of-time cache cannot hold such old classes (picocli
 * 4.7.7 ships Java 5 ones), so without this every run loads and verifies them anew. A jar without
 * old classes is left as it is; a jar with any class that cannot be rewritten is left whole, and
 * the step says so and fails.
 */
public class UpgradeClassFiles {
    public static void main(String[] args) throws Exception {
        int failed = 0;
        for (String a : args) {
            try {
                upgrade(Path.of(a));
            } catch (IOException | RuntimeException e) {
                System.err.println("UpgradeClassFiles: " + a + ": left as it is: " + e);
                failed++;
            }
        }
        if (failed > 0) System.exit(1);
    }

    static void upgrade(Path jar) throws IOException {
        List<ZipEntry> entries = new ArrayList<>();
        List<byte[]> contents = new ArrayList<>();
        boolean old = false;
        try (ZipInputStream in = new ZipInputStream(Files.newInputStream(jar))) {
            for (ZipEntry e; (e = in.getNextEntry()) != null; ) {
                byte[] b = in.readAllBytes();
                entries.add(e);
                contents.add(b);
                if (isClass(e) && ClassFile.of().parse(b).majorVersion() < 50) old = true;
            }
        }
        if (!old) return;
        int upgraded = 0;
        try (URLClassLoader loader = new URLClassLoader(new URL[] {jar.toUri().toURL()}, ClassLoader.getPlatformClassLoader())) {
            ClassFile cf = ClassFile.of(
                    ClassFile.StackMapsOption.GENERATE_STACK_MAPS,
                    ClassFile.ClassHierarchyResolverOption.of(ClassHierarchyResolver.ofClassLoading(loader)));
            for (int i = 0; i < entries.size(); i++) {
                if (!isClass(entries.get(i))) continue;
                ClassModel m = cf.parse(contents.get(i));
                if (m.majorVersion() >= 50) continue;
                ClassTransform version = (cb, element) -> cb.with(element instanceof ClassFileVersion ? ClassFileVersion.of(52, 0) : element);
                // rebuilding every method body is what makes the stack maps
                contents.set(i, cf.transformClass(m, version.andThen(ClassTransform.transformingMethodBodies(CodeTransform.ACCEPT_ALL))));
                upgraded++;
            }
        }
        Path partial = Files.createTempFile(jar.getParent(), jar.getFileName().toString(), ".partial");
        try {
            try (ZipOutputStream out = new ZipOutputStream(Files.newOutputStream(partial))) {
                for (int i = 0; i < entries.size(); i++) {
                    out.putNextEntry(new ZipEntry(entries.get(i).getName()));
                    out.write(contents.get(i));
                    out.closeEntry();
                }
            }
            Files.move(partial, jar, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(partial);
        }
        System.out.println("UpgradeClassFiles: " + jar.getFileName() + ": " + upgraded + " classes rewritten as Java 8 class files");
    }

    private static boolean isClass(ZipEntry e) {
        return e.getName().endsWith(".class") && !e.getName().startsWith("META-INF/");
    }
}
