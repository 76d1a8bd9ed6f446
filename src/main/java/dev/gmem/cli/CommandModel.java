package dev.gmem.cli;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Field;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Model.PositionalParamSpec;

/**
 * The command line's model, compiled at build time from the commands' picocli annotations and
 * read back at run time, so that a run reads no annotation.
 *
 * <p>Why: the JDK builds a proxy class for each annotation type the first time it is read, and
 * that cost about 20 ms of every run, with picocli's reflective walk another 10 (docs/benchmarks.md,
 * start time). The annotations stay the commands' one declaration: the build runs {@link #main},
 * which builds the command line from them as picocli does and writes what it found into
 * {@value #RESOURCE} in the class output; {@code Main} then builds every command from that file
 * through picocli's programmatic API, binding each option to its field by reflection (which reads
 * no annotation). {@code CommandModelTest} checks that the two give the same commands, option by
 * option and help text by help text.
 *
 * <p>The file: {@value #MAGIC}, a version, the fields the generated class reaches (a count, then
 * each field's class and name, numbered from 0 in that order), then the root command's node. A node (a command or a
 * mixin) is its class, its command attributes, its members in declaration order (an option, a
 * positional parameter, or a mixin with its own node; the order is the help's and the parser's),
 * its {@code @Spec} fields, and its subcommands, each a name and a node.
 */
final class CommandModel {
    static final String RESOURCE = "commands.model";
    private static final String MAGIC = "gmem-command-model";
    private static final int VERSION = 2;

    private CommandModel() {}

    /** A command or a mixin: the class whose instance it binds, and what it declares. */
    record Node(
            String className,
            String name,
            String[] aliases,
            String[] header,
            String[] description,
            String[] footer,
            String[] headings,
            String versionProvider,
            boolean helpCommand,
            List<Member> members,
            List<SpecField> specFields,
            Map<String, Node> subcommands) {}

    /** A member: an option or positional parameter ({@link Arg}), or a mixin. */
    sealed interface Member permits Arg, Mixin {}

    /** A mixin named {@code name}, held in {@code field} of the mixee (none: picocli's standard help options). */
    record Mixin(String name, String declaringClass, String field, Node node) implements Member {}

    /** A {@code @Spec} field: given the spec of its own node, or of the command it is mixed into. */
    record SpecField(String declaringClass, String field, boolean mixee) {}

    /** An option (with names) or a positional parameter (with an index), bound to a field. */
    record Arg(
            String declaringClass,
            String field,
            String[] names,
            String index,
            String arity,
            boolean arityInferred,
            String paramLabel,
            boolean hideParamSyntax,
            String[] description,
            String descriptionKey,
            String defaultValue,
            String fallbackValue,
            boolean required,
            boolean hidden,
            boolean negatable,
            boolean usageHelp,
            boolean versionHelp,
            int order,
            String splitRegex,
            String splitRegexSynopsisLabel,
            String showDefaultValue,
            String type,
            String[] auxiliaryTypes,
            String[] converters)
            implements Member {
        boolean isOption() {
            return names.length > 0;
        }
    }

    // ---- at build time: from the annotations ----

    /** Writes the model of {@code Main}'s annotated command line to {@code args[0]}. */
    public static void main(String[] args) throws IOException {
        if (args.length != 1) throw new IllegalArgumentException("usage: CommandModel OUTPUT-FILE");
        Node root = of(Main.annotatedCommandLine().getCommandSpec());
        Path out = Path.of(args[0]);
        Files.createDirectories(out.toAbsolutePath().getParent());
        List<Field> reached = new ArrayList<>();
        bound(root, reached);
        reached.removeIf(f -> !FieldAccess.reachable(f));
        try (DataOutputStream o = new DataOutputStream(new java.io.BufferedOutputStream(Files.newOutputStream(out)))) {
            o.writeUTF(MAGIC);
            o.writeInt(VERSION);
            // the fields the generated class reaches, in its numbering
            o.writeInt(reached.size());
            for (Field f : reached) {
                o.writeUTF(f.getDeclaringClass().getName());
                o.writeUTF(f.getName());
            }
            write(o, root);
        }
        Files.write(
                out.toAbsolutePath()
                        .getParent()
                        .resolve(
                                FieldAccess.GENERATED.substring(FieldAccess.GENERATED.lastIndexOf('.') + 1) + ".class"),
                FieldAccess.generate(reached));
    }

    /** Every field {@code n} and its subcommands bind, each once, in the model's order. */
    static void bound(Node n, List<Field> into) {
        for (Member m : n.members()) {
            if (m instanceof Arg a) once(field(a.declaringClass(), a.field()), into);
            else if (m instanceof Mixin x) {
                if (!x.field().isEmpty()) once(field(x.declaringClass(), x.field()), into);
                bound(x.node(), into);
            }
        }
        for (SpecField f : n.specFields()) once(field(f.declaringClass(), f.field()), into);
        for (Node c : n.subcommands().values()) bound(c, into);
    }

    private static void once(Field f, List<Field> into) {
        if (!into.contains(f)) into.add(f);
    }

    /** The model of {@code spec}, a command built from its annotations, with its subcommands. */
    static Node of(CommandSpec spec) {
        Node n = node(spec);
        for (Map.Entry<String, CommandLine> c : spec.subcommands().entrySet()) {
            // an alias lists the same command again
            if (!java.util.Arrays.asList(c.getValue().getCommandSpec().aliases())
                    .contains(c.getKey()))
                n.subcommands().put(c.getKey(), of(c.getValue().getCommandSpec()));
        }
        return n;
    }

    /** A command's or mixin's own node, without subcommands. */
    private static Node node(CommandSpec spec) {
        Object user = spec.userObject();
        if (user == null)
            throw new IllegalStateException(spec.qualifiedName() + " has no class: not an annotated command");
        // what the mixins bring is theirs (each arg to the direct mixin that brings it): the rest is this node's own
        Map<ArgSpec, Mixin> broughtBy = new IdentityHashMap<>();
        List<Mixin> mixins = new ArrayList<>();
        for (Map.Entry<String, CommandSpec> m : spec.mixins().entrySet()) {
            var element = spec.mixinAnnotatedElements().get(m.getKey());
            Field f = element == null ? null : (Field) element.userObject();
            Mixin mixin = new Mixin(
                    m.getKey(),
                    f == null ? "" : f.getDeclaringClass().getName(),
                    f == null ? "" : f.getName(),
                    node(m.getValue()));
            mixins.add(mixin);
            for (ArgSpec a : m.getValue().args()) broughtBy.put(a, mixin);
        }
        List<Member> members = new ArrayList<>();
        for (ArgSpec a : spec.args()) {
            if (a.inherited()) throw new IllegalStateException(a + ": inherited options are not in the command model");
            Mixin by = broughtBy.get(a);
            if (by == null) members.add(arg(spec, a));
            else if (!members.contains(by)) members.add(by); // a mixin's place is that of its first member
        }
        // a mixin that declares no option still binds its fields (a @Spec, say)
        for (Mixin m : mixins) if (!members.contains(m)) members.add(m);
        List<SpecField> specFields = new ArrayList<>();
        for (var e : spec.specElements()) {
            Field f = (Field) e.userObject();
            CommandLine.Spec annotation = f.getAnnotation(CommandLine.Spec.class);
            specFields.add(new SpecField(
                    f.getDeclaringClass().getName(),
                    f.getName(),
                    annotation != null && annotation.value() == CommandLine.Spec.Target.MIXEE));
        }
        if (!spec.parentCommandElements().isEmpty())
            throw new IllegalStateException(spec.qualifiedName() + ": @ParentCommand is not in the command model");
        CommandLine.Model.UsageMessageSpec u = spec.usageMessage();
        CommandLine.Model.UsageMessageSpec d = new CommandLine.Model.UsageMessageSpec();
        if (u.abbreviateSynopsis() != d.abbreviateSynopsis()
                || u.sortOptions() != d.sortOptions()
                || u.sortSynopsis() != d.sortSynopsis()
                || u.showDefaultValues() != d.showDefaultValues()
                || u.hidden() != d.hidden()
                || u.customSynopsis().length > 0
                || u.requiredOptionMarker() != d.requiredOptionMarker()
                || u.showAtFileInUsageHelp() != d.showAtFileInUsageHelp()
                || u.showEndOfOptionsDelimiterInUsageHelp() != d.showEndOfOptionsDelimiterInUsageHelp())
            throw new IllegalStateException(spec.qualifiedName() + ": a help setting the command model lacks");
        return new Node(
                user.getClass().getName(),
                spec.name(),
                spec.aliases(),
                u.header(),
                u.description(),
                u.footer(),
                new String[] {
                    u.headerHeading(),
                    u.synopsisHeading(),
                    u.descriptionHeading(),
                    u.parameterListHeading(),
                    u.optionListHeading(),
                    u.commandListHeading(),
                    u.footerHeading()
                },
                spec.versionProvider() == null
                        ? ""
                        : spec.versionProvider().getClass().getName(),
                spec.helpCommand(),
                members,
                specFields,
                new LinkedHashMap<>());
    }

    private static Arg arg(CommandSpec spec, ArgSpec a) {
        if (!(a.userObject() instanceof Field f))
            throw new IllegalStateException(
                    spec.qualifiedName() + ": " + a + " is not a field; only fields are modelled");
        Class<?> noPreprocessor =
                OptionSpec.builder("-x").build().preprocessor().getClass();
        if (a.parameterConsumer() != null
                || a.preprocessor().getClass() != noPreprocessor
                || a.interactive()
                || a.group() != null)
            throw new IllegalStateException(
                    spec.qualifiedName() + ": " + a + " uses a feature the command model lacks");
        OptionSpec o = a instanceof OptionSpec x ? x : null;
        // picocli flips a flag's initial value when it has no default; the model reads no initial value
        if (o != null
                && o.defaultValue() == null
                && (a.type() == boolean.class || a.type() == Boolean.class)
                && Boolean.TRUE.equals(a.initialValue()))
            throw new IllegalStateException(spec.qualifiedName() + ": " + a
                    + " starts true without a defaultValue; give it defaultValue = \"true\"");
        String index = "";
        // the texts as declared: the spec's own getters give them interpolated (a default baked in, %% made %)
        String[] description;
        String defaultValue;
        String paramLabel;
        String fallbackValue = null;
        if (o != null) {
            OptionSpec.Builder b = o.toBuilder();
            description = b.description();
            defaultValue = b.defaultValue();
            paramLabel = b.paramLabel();
            fallbackValue = b.fallbackValue();
        } else {
            PositionalParamSpec p = (PositionalParamSpec) a;
            PositionalParamSpec.Builder b = p.toBuilder();
            description = b.description();
            defaultValue = b.defaultValue();
            paramLabel = b.paramLabel();
            index = p.index().isUnspecified() ? "" : p.index().originalValue();
        }
        String[] converters = new String[a.converters().length];
        for (int i = 0; i < converters.length; i++)
            converters[i] = a.converters()[i].getClass().getName();
        String[] aux = new String[a.auxiliaryTypes().length];
        for (int i = 0; i < aux.length; i++) aux[i] = a.auxiliaryTypes()[i].getName();
        return new Arg(
                f.getDeclaringClass().getName(),
                f.getName(),
                o == null ? new String[0] : o.names(),
                index,
                a.arity().originalValue().isEmpty()
                        ? a.arity().toString()
                        : a.arity().originalValue(),
                a.arity().isUnspecified(),
                paramLabel,
                a.hideParamSyntax(),
                description,
                a.descriptionKey(),
                defaultValue,
                fallbackValue,
                a.required(),
                a.hidden(),
                o != null && o.negatable(),
                o != null && o.usageHelp(),
                o != null && o.versionHelp(),
                o == null ? -1 : o.order(),
                a.splitRegex(),
                a.splitRegexSynopsisLabel(),
                a.showDefaultValue().name(),
                a.type().getName(),
                aux,
                converters);
    }

    // ---- the file ----

    private static void write(DataOutputStream o, Node n) throws IOException {
        o.writeUTF(n.className());
        o.writeUTF(n.name());
        strings(o, n.aliases());
        strings(o, n.header());
        strings(o, n.description());
        strings(o, n.footer());
        strings(o, n.headings());
        o.writeUTF(n.versionProvider());
        o.writeBoolean(n.helpCommand());
        o.writeInt(n.members().size());
        for (Member m : n.members()) {
            if (m instanceof Arg a) {
                o.writeByte('a');
                o.writeUTF(a.declaringClass());
                o.writeUTF(a.field());
                strings(o, a.names());
                o.writeUTF(a.index());
                o.writeUTF(a.arity());
                o.writeBoolean(a.arityInferred());
                nullable(o, a.paramLabel());
                o.writeBoolean(a.hideParamSyntax());
                strings(o, a.description());
                nullable(o, a.descriptionKey());
                nullable(o, a.defaultValue());
                nullable(o, a.fallbackValue());
                o.writeBoolean(a.required());
                o.writeBoolean(a.hidden());
                o.writeBoolean(a.negatable());
                o.writeBoolean(a.usageHelp());
                o.writeBoolean(a.versionHelp());
                o.writeInt(a.order());
                nullable(o, a.splitRegex());
                nullable(o, a.splitRegexSynopsisLabel());
                o.writeUTF(a.showDefaultValue());
                o.writeUTF(a.type());
                strings(o, a.auxiliaryTypes());
                strings(o, a.converters());
            } else if (m instanceof Mixin x) {
                o.writeByte('m');
                o.writeUTF(x.name());
                o.writeUTF(x.declaringClass());
                o.writeUTF(x.field());
                write(o, x.node());
            }
        }
        o.writeInt(n.specFields().size());
        for (SpecField s : n.specFields()) {
            o.writeUTF(s.declaringClass());
            o.writeUTF(s.field());
            o.writeBoolean(s.mixee());
        }
        o.writeInt(n.subcommands().size());
        for (Map.Entry<String, Node> c : n.subcommands().entrySet()) {
            // each with its length, so that a run skips the commands it does not build
            var bytes = new java.io.ByteArrayOutputStream();
            try (DataOutputStream sub = new DataOutputStream(bytes)) {
                write(sub, c.getValue());
            }
            o.writeUTF(c.getKey());
            o.writeInt(bytes.size());
            bytes.writeTo(o);
        }
    }

    private static void strings(DataOutputStream o, String[] s) throws IOException {
        o.writeInt(s == null ? -1 : s.length);
        if (s != null) for (String x : s) o.writeUTF(x);
    }

    private static void nullable(DataOutputStream o, String s) throws IOException {
        o.writeBoolean(s != null);
        if (s != null) o.writeUTF(s);
    }

    /** The model on the class path: the one the build wrote beside this class. */
    static Node load(java.util.function.Predicate<String> which) {
        try (InputStream in = CommandModel.class.getResourceAsStream(RESOURCE)) {
            if (in == null)
                throw new IllegalStateException("gmem's command model (dev/gmem/cli/" + RESOURCE
                        + ") is not on the class path: build gmem with Maven, which writes it");
            DataInputStream d = new DataInputStream(new java.io.BufferedInputStream(in, 1 << 16));
            String magic = d.readUTF();
            int version = d.readInt();
            if (!magic.equals(MAGIC) || version != VERSION)
                throw new IllegalStateException(
                        "gmem's command model is of another build (" + magic + " " + version + "); rebuild gmem");
            int n = d.readInt();
            Map<String, Integer> numbers = new java.util.HashMap<>(n * 2);
            for (int i = 0; i < n; i++) numbers.put(d.readUTF() + '#' + d.readUTF(), i);
            if (access == null) access = new Access(numbers, FieldAccess.load(n));
            return read(d, which);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("gmem's command model cannot be read", e);
        }
    }

    /** A node, with those of its subcommands {@code which} accepts (by name): the others are skipped unread. */
    private static Node read(DataInputStream d, java.util.function.Predicate<String> which) throws IOException {
        String className = d.readUTF();
        String name = d.readUTF();
        String[] aliases = strings(d);
        String[] header = strings(d);
        String[] description = strings(d);
        String[] footer = strings(d);
        String[] headings = strings(d);
        String versionProvider = d.readUTF();
        boolean helpCommand = d.readBoolean();
        int nm = d.readInt();
        List<Member> members = new ArrayList<>(nm);
        for (int i = 0; i < nm; i++) {
            int kind = d.readByte();
            if (kind == 'm') {
                members.add(new Mixin(d.readUTF(), d.readUTF(), d.readUTF(), read(d, c -> true)));
            } else if (kind == 'a') {
                members.add(new Arg(
                        d.readUTF(),
                        d.readUTF(),
                        strings(d),
                        d.readUTF(),
                        d.readUTF(),
                        d.readBoolean(),
                        nullable(d),
                        d.readBoolean(),
                        strings(d),
                        nullable(d),
                        nullable(d),
                        nullable(d),
                        d.readBoolean(),
                        d.readBoolean(),
                        d.readBoolean(),
                        d.readBoolean(),
                        d.readBoolean(),
                        d.readInt(),
                        nullable(d),
                        nullable(d),
                        d.readUTF(),
                        d.readUTF(),
                        strings(d),
                        strings(d)));
            } else {
                throw new IOException("a member of kind " + kind + " in the command model of " + className);
            }
        }
        int ns = d.readInt();
        List<SpecField> specFields = new ArrayList<>(ns);
        for (int i = 0; i < ns; i++) specFields.add(new SpecField(d.readUTF(), d.readUTF(), d.readBoolean()));
        int nc = d.readInt();
        Map<String, Node> subcommands = new LinkedHashMap<>();
        for (int i = 0; i < nc; i++) {
            String sub = d.readUTF();
            int length = d.readInt();
            if (which.test(sub)) subcommands.put(sub, read(d, c -> true));
            else d.skipNBytes(length);
        }
        return new Node(
                className,
                name,
                aliases,
                header,
                description,
                footer,
                headings,
                versionProvider,
                helpCommand,
                members,
                specFields,
                subcommands);
    }

    private static String[] strings(DataInputStream d) throws IOException {
        int n = d.readInt();
        if (n < 0) return null;
        String[] s = new String[n];
        for (int i = 0; i < n; i++) s[i] = d.readUTF();
        return s;
    }

    private static String nullable(DataInputStream d) throws IOException {
        return d.readBoolean() ? d.readUTF() : null;
    }

    // ---- at run time: picocli's programmatic API ----

    /**
     * A new instance of the node's class and the command spec bound to it, with its subcommands,
     * each made by {@code factory} as picocli makes them.
     */
    static CommandSpec build(Node n, CommandLine.IFactory factory) {
        CommandSpec spec = spec(n, instance(n.className()), null, factory);
        for (Map.Entry<String, Node> c : n.subcommands().entrySet())
            spec.addSubcommand(c.getKey(), new CommandLine(build(c.getValue(), factory), factory));
        return spec;
    }

    /** The spec of node {@code n} bound to {@code user}; {@code mixee} is the command it is mixed into, if any. */
    private static CommandSpec spec(Node n, Object user, CommandSpec mixee, CommandLine.IFactory factory) {
        CommandSpec spec = CommandSpec.wrapWithoutInspection(user, factory);
        spec.name(n.name());
        spec.aliases(n.aliases());
        String[] h = n.headings();
        spec.usageMessage()
                .header(n.header())
                .description(n.description())
                .footer(n.footer())
                .headerHeading(h[0])
                .synopsisHeading(h[1])
                .descriptionHeading(h[2])
                .parameterListHeading(h[3])
                .optionListHeading(h[4])
                .commandListHeading(h[5])
                .footerHeading(h[6]);
        if (!n.versionProvider().isEmpty())
            spec.versionProvider((CommandLine.IVersionProvider) instance(n.versionProvider()));
        spec.helpCommand(n.helpCommand());
        // instanceof, not a pattern switch: a switch's bootstrap spins classes at run time, some 5 ms
        for (Member m : n.members()) {
            if (m instanceof Arg a) {
                if (a.isOption()) spec.addOption(option(a, user));
                else spec.addPositional(positional(a, user));
            } else if (m instanceof Mixin x) {
                Object held = instance(x.node().className());
                if (!x.field().isEmpty())
                    FieldBinding.of(x.declaringClass(), x.field(), user).set(held);
                // a mixin's mixee is what it is directly mixed into, as picocli has it
                spec.addMixin(x.name(), spec(x.node(), held, spec, factory));
            }
        }
        for (SpecField s : n.specFields())
            FieldBinding.of(s.declaringClass(), s.field(), user).set(s.mixee() && mixee != null ? mixee : spec);
        return spec;
    }

    private static OptionSpec option(Arg a, Object user) {
        Bound x = bound(a, user);
        OptionSpec.Builder b = OptionSpec.builder(a.names())
                .paramLabel(a.paramLabel())
                .hideParamSyntax(a.hideParamSyntax())
                .description(a.description())
                .descriptionKey(a.descriptionKey())
                .defaultValue(a.defaultValue())
                .required(a.required())
                .hidden(a.hidden())
                .splitRegex(a.splitRegex())
                .splitRegexSynopsisLabel(a.splitRegexSynopsisLabel())
                .showDefaultValue(CommandLine.Help.Visibility.valueOf(a.showDefaultValue()))
                .type(x.type())
                .auxiliaryTypes(x.auxiliaryTypes())
                .converters(x.converters())
                .getter(x.binding())
                .setter(x.binding())
                .hasInitialValue(false)
                .userObject(x.binding().field())
                .fallbackValue(a.fallbackValue())
                .negatable(a.negatable())
                .usageHelp(a.usageHelp())
                .versionHelp(a.versionHelp())
                .order(a.order());
        b.arity(CommandLine.Range.valueOf(a.arity()).unspecified(a.arityInferred()));
        return b.build();
    }

    private static PositionalParamSpec positional(Arg a, Object user) {
        Bound x = bound(a, user);
        // the same attributes as an option's: picocli's common builder is not public, so they are set twice
        PositionalParamSpec.Builder b = PositionalParamSpec.builder()
                .paramLabel(a.paramLabel())
                .hideParamSyntax(a.hideParamSyntax())
                .description(a.description())
                .descriptionKey(a.descriptionKey())
                .defaultValue(a.defaultValue())
                .required(a.required())
                .hidden(a.hidden())
                .splitRegex(a.splitRegex())
                .splitRegexSynopsisLabel(a.splitRegexSynopsisLabel())
                .showDefaultValue(CommandLine.Help.Visibility.valueOf(a.showDefaultValue()))
                .type(x.type())
                .auxiliaryTypes(x.auxiliaryTypes())
                .converters(x.converters())
                .getter(x.binding())
                .setter(x.binding())
                .hasInitialValue(false)
                .userObject(x.binding().field());
        if (!a.index().isEmpty()) b.index(a.index());
        b.arity(CommandLine.Range.valueOf(a.arity()).unspecified(a.arityInferred()));
        return b.build();
    }

    /** What an option or positional parameter binds: its field in {@code user}, its types and converters. */
    private record Bound(
            FieldBinding binding,
            Class<?> type,
            Class<?>[] auxiliaryTypes,
            CommandLine.ITypeConverter<?>[] converters) {}

    private static Bound bound(Arg a, Object user) {
        Class<?>[] aux = new Class<?>[a.auxiliaryTypes().length];
        for (int i = 0; i < aux.length; i++) aux[i] = type(a.auxiliaryTypes()[i]);
        CommandLine.ITypeConverter<?>[] converters = new CommandLine.ITypeConverter<?>[a.converters().length];
        for (int i = 0; i < converters.length; i++)
            converters[i] = (CommandLine.ITypeConverter<?>) instance(a.converters()[i]);
        return new Bound(FieldBinding.of(a.declaringClass(), a.field(), user), type(a.type()), aux, converters);
    }

    /** The generated field access of the model on the class path, and its fields' numbers ({@code "class#field"}). */
    private record Access(Map<String, Integer> numbers, FieldAccess fields) {}

    /** Set by the first {@link #load}: every load reads the same file. */
    private static volatile Access access;

    /** The numbers of the fields the generated class reaches ({@code "class#field"}), once a model is loaded; for tests. */
    static Map<String, Integer> generatedFieldNumbers() {
        Access a = access;
        return a == null ? Map.of() : a.numbers();
    }

    /** The generated field access, once a model naming fields is loaded; for tests. */
    static FieldAccess generatedFieldAccess() {
        Access a = access;
        return a == null ? null : a.fields();
    }

    /**
     * A field in an instance: what picocli reads for the help's defaults and sets when it parses,
     * through the generated field access when it reaches the field ({@code number} from 0), else
     * by reflection.
     */
    private record FieldBinding(Field field, Object target, int number)
            implements CommandLine.Model.IGetter, CommandLine.Model.ISetter {
        static FieldBinding of(String declaringClass, String name, Object target) {
            Access a = access;
            Integer n = a == null ? null : a.numbers().get(declaringClass + '#' + name);
            return new FieldBinding(CommandModel.field(declaringClass, name), target, n == null ? -1 : n);
        }

        @Override
        @SuppressWarnings("unchecked")
        public <T> T get() {
            if (number >= 0) return (T) access.fields().get(number, target);
            try {
                return (T) field.get(target);
            } catch (IllegalAccessException e) {
                throw new IllegalStateException(e);
            }
        }

        @Override
        public <T> T set(T value) {
            T old = get();
            if (number >= 0) {
                access.fields().set(number, target, value);
                return old;
            }
            try {
                field.set(target, value);
                return old;
            } catch (IllegalAccessException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    private static final Map<String, Class<?>> PRIMITIVES = Map.of(
            "boolean", boolean.class,
            "byte", byte.class,
            "char", char.class,
            "short", short.class,
            "int", int.class,
            "long", long.class,
            "float", float.class,
            "double", double.class);

    private static Class<?> type(String name) {
        Class<?> p = PRIMITIVES.get(name);
        if (p != null) return p;
        try {
            return Class.forName(name, false, CommandModel.class.getClassLoader());
        } catch (ClassNotFoundException e) {
            throw new IllegalStateException("the command model names a class that is not here: " + name, e);
        }
    }

    private static Field field(String declaringClass, String name) {
        try {
            Field f = type(declaringClass).getDeclaredField(name);
            f.setAccessible(true); // picocli's standard help options are private fields of its own
            return f;
        } catch (NoSuchFieldException e) {
            throw new IllegalStateException(
                    "the command model names a field that is not here: " + declaringClass + "." + name, e);
        }
    }

    private static Object instance(String className) {
        try {
            var c = type(className).getDeclaredConstructor();
            c.setAccessible(true);
            return c.newInstance();
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot make a " + className + " for the command line", e);
        }
    }
}
