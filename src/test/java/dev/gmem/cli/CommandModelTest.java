package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * The command model the build compiled from the annotations gives the same command line as
 * picocli's reading of the annotations: every command, its help text, its options attribute by
 * attribute, and what parsing sets.
 */
class CommandModelTest {
    @Test
    void everyCommandIsTheSameAsTheAnnotationsSay() {
        CommandLine annotated = Main.annotatedCommandLine();
        CommandLine modelled = Main.commandLine();
        List<String> compared = new ArrayList<>();
        compare(annotated, modelled, compared);
        // every command, the nested ones included
        assertThat(compared).contains("gmem", "gmem restore", "gmem snapshot pack", "gmem snapshot push", "gmem help");
        assertThat(compared.size()).isGreaterThan(30);
    }

    private static void compare(CommandLine annotated, CommandLine modelled, List<String> compared) {
        CommandSpec a = annotated.getCommandSpec();
        CommandSpec m = modelled.getCommandSpec();
        String name = a.qualifiedName();
        assertThat(m.qualifiedName()).isEqualTo(name);
        assertThat(usage(modelled)).as(name + "'s help").isEqualTo(usage(annotated));
        assertThat(m.userObject().getClass()).isEqualTo(a.userObject().getClass());
        assertThat(m.mixins().keySet())
                .as(name + "'s mixins")
                .isEqualTo(a.mixins().keySet());
        assertThat(m.mixinStandardHelpOptions()).isEqualTo(a.mixinStandardHelpOptions());
        assertThat(m.helpCommand()).isEqualTo(a.helpCommand());
        assertThat(m.args()).as(name + "'s options and parameters").hasSameSizeAs(a.args());
        for (int i = 0; i < a.args().size(); i++) {
            ArgSpec x = a.args().get(i);
            assertThat(attributes(m.args().get(i))).as(name + " " + x).isEqualTo(attributes(x));
        }
        injected(name, a.userObject(), m.userObject());
        compared.add(name);
        assertThat(modelled.getSubcommands().keySet())
                .as(name + "'s subcommands")
                .isEqualTo(annotated.getSubcommands().keySet());
        for (Map.Entry<String, CommandLine> c : annotated.getSubcommands().entrySet())
            compare(c.getValue(), modelled.getSubcommands().get(c.getKey()), compared);
    }

    /** The help text, which must come without a warning from picocli (a text it could not format, say). */
    private static String usage(CommandLine cl) {
        java.io.PrintStream err = System.err;
        var warnings = new java.io.ByteArrayOutputStream();
        System.setErr(new java.io.PrintStream(warnings, true, java.nio.charset.StandardCharsets.UTF_8));
        try {
            String text = cl.getUsageMessage(CommandLine.Help.Ansi.OFF);
            assertThat(warnings.toString(java.nio.charset.StandardCharsets.UTF_8))
                    .as(cl.getCommandSpec().qualifiedName() + "'s help printed")
                    .isEmpty();
            return text;
        } finally {
            System.setErr(err);
        }
    }

    /** What picocli parses and prints by: every attribute of an option or positional parameter. */
    private static Map<String, Object> attributes(ArgSpec a) {
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        if (a instanceof CommandLine.Model.OptionSpec o) {
            m.put("names", List.of(o.names()));
            m.put("order", o.order());
            m.put("fallbackValue", o.fallbackValue());
            m.put("negatable", o.negatable());
            m.put("usageHelp", o.usageHelp());
            m.put("versionHelp", o.versionHelp());
        } else {
            m.put("index", ((CommandLine.Model.PositionalParamSpec) a).index());
        }
        m.put("arity", a.arity());
        m.put("arityUnspecified", a.arity().isUnspecified());
        m.put("paramLabel", a.paramLabel());
        m.put("hideParamSyntax", a.hideParamSyntax());
        m.put("description", List.of(a.description()));
        m.put("descriptionKey", a.descriptionKey());
        m.put("defaultValue", a.defaultValue());
        m.put("required", a.required());
        m.put("hidden", a.hidden());
        m.put("splitRegex", a.splitRegex());
        m.put("splitRegexSynopsisLabel", a.splitRegexSynopsisLabel());
        m.put("showDefaultValue", a.showDefaultValue());
        m.put("type", a.type());
        m.put("auxiliaryTypes", List.of(a.auxiliaryTypes()));
        m.put("converters", classes(a.converters()));
        // not the initial value: the model leaves it in the field, unread (the help's defaults and what
        // parsing sets, compared here too, show it is the same)
        m.put("scopeType", a.scopeType());
        m.put("inherited", a.inherited());
        m.put("field", a.userObject());
        return m;
    }

    /**
     * What the two put into a command's fields before any parse: each {@code @Spec} field the same
     * spec (its own, or its mixee's), each {@code @Mixin} field an instance of the same class with
     * the same of its own.
     */
    private static void injected(String name, Object annotated, Object modelled) {
        for (Class<?> c = annotated.getClass(); c != null && c != Object.class; c = c.getSuperclass()) {
            for (java.lang.reflect.Field f : c.getDeclaredFields()) {
                if (java.lang.reflect.Modifier.isStatic(f.getModifiers())) continue;
                if (!f.isAnnotationPresent(CommandLine.Spec.class) && !f.isAnnotationPresent(CommandLine.Mixin.class))
                    continue;
                f.setAccessible(true);
                Object x;
                Object y;
                try {
                    x = f.get(annotated);
                    y = f.get(modelled);
                } catch (IllegalAccessException e) {
                    throw new AssertionError(e);
                }
                String what = name + " " + c.getSimpleName() + "." + f.getName();
                assertThat(y == null).as(what).isEqualTo(x == null);
                if (x instanceof CommandSpec sx) {
                    CommandSpec sy = (CommandSpec) y;
                    assertThat(sy.qualifiedName()).as(what).isEqualTo(sx.qualifiedName());
                    assertThat(sy.userObject().getClass())
                            .as(what)
                            .isEqualTo(sx.userObject().getClass());
                    assertThat(sy.args()).as(what + "'s options").hasSameSizeAs(sx.args());
                } else if (x != null) {
                    assertThat(y.getClass()).as(what).isEqualTo(x.getClass());
                    injected(what, x, y);
                }
            }
        }
    }

    @Test
    void theVersionIsTheSame() {
        var a = new java.io.StringWriter();
        var m = new java.io.StringWriter();
        Main.annotatedCommandLine().printVersionHelp(new java.io.PrintWriter(a, true));
        Main.commandLine(new String[] {"--version"}).printVersionHelp(new java.io.PrintWriter(m, true));
        assertThat(m.toString()).startsWith("gmem ").isEqualTo(a.toString());
    }

    private static List<Class<?>> classes(Object[] objects) {
        List<Class<?>> l = new ArrayList<>();
        for (Object o : objects) l.add(o.getClass());
        return l;
    }

    @Test
    void parsingSetsTheSameValues() {
        List<String[]> runs = List.of(
                new String[] {"restore", "g.snap", "--mode", "lazy", "--json", "--threads", "3", "--trace", "t.trace"},
                new String[] {"restore", "tcp://127.0.0.1:9", "--reconnect-timeout", "5", "--tls-ca", "ca.pem"},
                new String[] {"snapshot", "pack", "g.raw", "-o", "g.snap", "--compress", "none"},
                new String[] {"image", "synth", "--size", "64M", "--hole", "50%", "-o", "g.raw"},
                new String[] {"bench", "populate", "--threads", "1,2", "--no-c-reference"},
                new String[] {"serve", "--memory", "g.raw", "--listen", "127.0.0.1:0", "--push-nice", "0"},
                new String[] {"fc-handler", "--socket", "s.sock", "--source", "tcp://127.0.0.1:9"},
                new String[] {"probe", "--json"},
                new String[] {"help", "restore"},
                new String[] {"bench", "populate", "--c-reference", "--size", "1G"},
                new String[] {"qemu", "restore", "vm.snap", "--timeout", "5", "--", "qemu-system-x86_64", "-m", "1G"},
                new String[] {"fc-handler", "--socket", "s.sock", "--source", "g.snap", "--graduate"});
        List<String[]> refused = List.of(
                new String[] {"restore", "g.snap", "--threads", "many"},
                new String[] {"image", "synth", "--size", "64M"});
        List<String[]> all = new ArrayList<>(runs);
        all.addAll(refused);
        for (String[] args : all) {
            CommandLine annotated = Main.annotatedCommandLine();
            CommandLine modelled = Main.commandLine(args);
            String what = String.join(" ", args);
            Object x = parse(annotated, args);
            Object y = parse(modelled, args);
            assertThat(y).as(what).isEqualTo(x);
            assertThat(x.toString().startsWith("refused")).as(what + ": " + x).isEqualTo(refused.contains(args));
        }
    }

    /** What parsing {@code args} set: each matched command's every option and parameter value, or the error. */
    private static Object parse(CommandLine cl, String[] args) {
        try {
            List<String> values = new ArrayList<>();
            CommandLine.ParseResult r = cl.parseArgs(args);
            for (CommandLine.ParseResult p = r; p != null; p = p.subcommand()) {
                for (ArgSpec a : p.commandSpec().args())
                    values.add(p.commandSpec().qualifiedName() + " " + key(a) + " = "
                            + java.util.Objects.toString(a.getValue()));
            }
            return values;
        } catch (CommandLine.ParameterException e) {
            return "refused: " + e.getMessage();
        }
    }

    private static String key(ArgSpec a) {
        return a instanceof CommandLine.Model.OptionSpec o
                ? o.longestName()
                : ((CommandLine.Model.PositionalParamSpec) a).index() + " " + a.paramLabel();
    }

    /**
     * The class the build generated reaches, by number, exactly the field the model names for that
     * number (what it sets, reflection reads, and the other way round), and it reaches every field
     * of gmem's own commands: only picocli's own help options are left to reflection.
     */
    @Test
    void theGeneratedFieldAccessReachesEachFieldByItsNumber() throws Exception {
        CommandModel.Node root = CommandModel.load(c -> true);
        Map<String, Integer> numbers = CommandModel.generatedFieldNumbers();
        FieldAccess access = CommandModel.generatedFieldAccess();
        assertThat(access).isNotNull();
        List<java.lang.reflect.Field> bound = new ArrayList<>();
        CommandModel.bound(root, bound);
        List<String> reflective = new ArrayList<>();
        for (java.lang.reflect.Field f : bound) {
            String key = f.getDeclaringClass().getName() + "#" + f.getName();
            if (!numbers.containsKey(key)) {
                reflective.add(key);
                continue;
            }
            f.setAccessible(true);
            var ctor = f.getDeclaringClass().getDeclaredConstructor();
            ctor.setAccessible(true);
            Object target = ctor.newInstance();
            int n = numbers.get(key);
            for (Object value : samples(f.getType())) {
                access.set(n, target, value);
                assertThat(f.get(target)).as(key + " set to " + value).isEqualTo(value);
                f.set(target, value);
                assertThat(access.get(n, target)).as(key + " read").isEqualTo(value);
            }
        }
        assertThat(numbers).hasSize(bound.size() - reflective.size());
        assertThat(numbers.size()).isGreaterThan(50);
        assertThat(reflective)
                .as("fields left to reflection: make a field of a command package-private to have it reached")
                .allMatch(k -> k.startsWith("picocli."));
        assertThatThrownBy(() -> access.get(numbers.size(), new Object())).isInstanceOf(IllegalArgumentException.class);
    }

    /** Two values a field of {@code type} can hold (null for a type without an obvious one). */
    private static List<Object> samples(Class<?> type) {
        if (type == boolean.class) return List.of(true, false);
        if (type == int.class) return List.of(7, -3);
        if (type == long.class) return List.of(1L << 40, -1L);
        if (type == double.class) return List.of(2.5, -0.0);
        if (type == String.class) return java.util.Arrays.asList("x", null);
        if (type == java.nio.file.Path.class) return java.util.Arrays.asList(java.nio.file.Path.of("p"), null);
        if (type.isEnum()) return java.util.Arrays.asList(type.getEnumConstants()[0], null);
        if (type.isPrimitive()) throw new AssertionError("a field of a primitive type without samples: " + type);
        return java.util.Collections.singletonList(null);
    }

    @Test
    void aRunBuildsOnlyTheCommandItNames() {
        assertThat(Main.commandLine(new String[] {"restore", "x"})
                        .getSubcommands()
                        .keySet())
                .containsExactly("restore");
        assertThat(Main.commandLine(new String[] {"--version"}).getSubcommands())
                .isEmpty();
        assertThat(Main.commandLine(new String[] {"--help"}).getSubcommands())
                .containsKeys("restore", "snapshot", "serve", "help");
    }

    @Test
    void aMissingFieldIsAClearError() {
        var node = new CommandModel.Node(
                Options.Json.class.getName(),
                "x",
                new String[0],
                new String[0],
                new String[0],
                new String[0],
                new String[] {"", "", "", "", "", "", ""},
                "",
                false,
                List.of(new CommandModel.Arg(
                        Options.Json.class.getName(),
                        "gone",
                        new String[] {"--gone"},
                        "",
                        "0",
                        false,
                        null,
                        false,
                        new String[0],
                        null,
                        null,
                        null,
                        false,
                        false,
                        false,
                        false,
                        false,
                        -1,
                        "",
                        "",
                        "ON_DEMAND",
                        "boolean",
                        new String[0],
                        new String[0])),
                List.of(),
                new java.util.LinkedHashMap<>());
        assertThatThrownBy(() -> CommandModel.build(node, CommandLine.defaultFactory()))
                .hasMessageContaining("names a field that is not here: dev.gmem.cli.Options$Json.gone");
    }
}
