package dev.gmem.memory;

import java.lang.reflect.Method;
import java.util.List;
import org.junit.jupiter.api.DisplayNameGenerator;

/** Puts the backend in every conformance test's name: "[memfd] writeTwiceGivesEnospc". */
final class BackendDisplayNames extends DisplayNameGenerator.Simple {
    @Override
    public String generateDisplayNameForMethod(
            List<Class<?>> enclosingInstanceTypes, Class<?> testClass, Method testMethod) {
        String backend =
                testClass.getSimpleName().replace("ConformanceTest", "").toLowerCase(java.util.Locale.ROOT);
        return "[" + backend + "] " + testMethod.getName();
    }
}
