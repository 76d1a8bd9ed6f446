package dev.gmem.testing;

import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.support.descriptor.ClassSource;
import org.junit.platform.engine.support.descriptor.MethodSource;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;

/**
 * Prints every skipped test with its reason, so that a skip is never silent in the build log:
 * {@code SKIPPED KvmTest.guestRoundTrip: needs /dev/kvm: ...}. Tests aborted by a failed
 * assumption count as skipped and are printed the same way.
 */
public final class SkipReporter implements TestExecutionListener {
    @Override
    public void executionSkipped(TestIdentifier test, String reason) {
        System.out.println("SKIPPED " + name(test) + ": " + reason);
    }

    @Override
    public void executionFinished(TestIdentifier test, TestExecutionResult result) {
        if (result.getStatus() == TestExecutionResult.Status.ABORTED) {
            System.out.println("SKIPPED " + name(test) + ": "
                    + result.getThrowable().map(Throwable::getMessage).orElse("no reason given"));
        }
    }

    private static String name(TestIdentifier test) {
        return test.getSource()
                .map(s -> switch (s) {
                    case MethodSource m ->
                        simple(m.getClassName()) + "." + m.getMethodName()
                                + (test.getDisplayName().startsWith(m.getMethodName())
                                        ? ""
                                        : " [" + test.getDisplayName() + "]");
                    case ClassSource c -> simple(c.getClassName());
                    default -> test.getDisplayName();
                })
                .orElse(test.getDisplayName());
    }

    private static String simple(String className) {
        return className.substring(className.lastIndexOf('.') + 1);
    }
}
