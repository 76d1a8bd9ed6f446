package dev.gmem.cli;

import static java.lang.constant.ConstantDescs.CD_Object;
import static java.lang.constant.ConstantDescs.CD_int;
import static java.lang.constant.ConstantDescs.CD_void;

import java.lang.classfile.ClassFile;
import java.lang.classfile.CodeBuilder;
import java.lang.classfile.Label;
import java.lang.classfile.instruction.SwitchCase;
import java.lang.constant.ClassDesc;
import java.lang.constant.MethodTypeDesc;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads and writes the fields the command line binds (options, mixins, {@code @Spec} fields) by
 * number, through plain field instructions: a class the build generates beside the command model
 * ({@value #GENERATED}), with a {@code getfield} and a {@code putfield} per field.
 *
 * <p>Why: reflection's first access to a field of each kind spins method handles and their
 * classes at run time, about 8 ms of every command's start (docs/benchmarks.md, start time). A
 * field the generated class cannot reach (private, or of a type it cannot name, such as
 * picocli's own help options) is left to reflection ({@link #reachable}).
 */
interface FieldAccess {
    /** The generated class's name, in this package (it reaches package-private fields). */
    String GENERATED = "dev.gmem.cli.GeneratedFieldAccess";

    /** Field {@code field}'s value in {@code target}, a primitive boxed. */
    Object get(int field, Object target);

    /** Sets field {@code field} of {@code target} to {@code value}, a primitive boxed. */
    void set(int field, Object target, Object value);

    /**
     * The generated class, or null when {@code fields} is empty. The command model names the
     * fields it covers; a model whose class is missing was not built by Maven.
     */
    static FieldAccess load(int fields) {
        if (fields == 0) return null;
        try {
            return (FieldAccess) Class.forName(GENERATED, true, FieldAccess.class.getClassLoader())
                    .getDeclaredConstructor()
                    .newInstance();
        } catch (ReflectiveOperationException | LinkageError | ClassCastException e) {
            throw new IllegalStateException(
                    "gmem's command model names " + fields + " fields, but its " + GENERATED + " cannot be used (" + e
                            + "): build gmem with Maven, which writes both",
                    e);
        }
    }

    // ---- at build time ----

    /**
     * Whether the generated class, in this package, can read and write {@code f} with field
     * instructions: an instance field, neither private nor final, of a class of this package that
     * it can name, holding a primitive or a type it can name.
     */
    static boolean reachable(Field f) {
        int m = f.getModifiers();
        if (Modifier.isPrivate(m) || Modifier.isStatic(m) || Modifier.isFinal(m)) return false;
        Class<?> owner = f.getDeclaringClass();
        return owner.getPackageName().equals(FieldAccess.class.getPackageName())
                && nameable(owner)
                && nameable(f.getType());
    }

    private static boolean nameable(Class<?> c) {
        while (c.isArray()) c = c.getComponentType();
        if (c.isPrimitive()) return true;
        boolean samePackage = c.getPackageName().equals(FieldAccess.class.getPackageName())
                && c.getClassLoader() == FieldAccess.class.getClassLoader();
        for (Class<?> k = c; k != null; k = k.getDeclaringClass()) {
            int m = k.getModifiers();
            if (Modifier.isPrivate(m) || !(Modifier.isPublic(m) || samePackage)) return false;
        }
        return !c.isHidden();
    }

    /** The class file of {@value #GENERATED} for {@code fields}, numbered by their position. */
    static byte[] generate(List<Field> fields) {
        for (Field f : fields)
            if (!reachable(f)) throw new IllegalArgumentException(f + " cannot be reached by field instructions");
        MethodTypeDesc getType = MethodTypeDesc.of(CD_Object, CD_int, CD_Object);
        MethodTypeDesc setType = MethodTypeDesc.of(CD_void, CD_int, CD_Object, CD_Object);
        return ClassFile.of().build(ClassDesc.of(GENERATED), c -> {
            c.withFlags(ClassFile.ACC_PUBLIC | ClassFile.ACC_FINAL | ClassFile.ACC_SUPER);
            c.withInterfaceSymbols(ClassDesc.of(FieldAccess.class.getName()));
            c.withMethodBody(
                    "<init>",
                    MethodTypeDesc.of(CD_void),
                    ClassFile.ACC_PUBLIC,
                    b -> b.aload(0)
                            .invokespecial(CD_Object, "<init>", MethodTypeDesc.of(CD_void))
                            .return_());
            c.withMethodBody("get", getType, ClassFile.ACC_PUBLIC, b -> cases(b, fields, false));
            c.withMethodBody("set", setType, ClassFile.ACC_PUBLIC, b -> cases(b, fields, true));
        });
    }

    /**
     * A {@code tableswitch} on the field's number (argument 1): each case reads its field of
     * argument 2 and returns it boxed, or ({@code write}) sets it to argument 3, unboxed.
     */
    private static void cases(CodeBuilder b, List<Field> fields, boolean write) {
        Label unknown = b.newLabel();
        List<Label> labels = new ArrayList<>();
        List<SwitchCase> table = new ArrayList<>();
        for (int i = 0; i < fields.size(); i++) {
            Label l = b.newLabel();
            labels.add(l);
            table.add(SwitchCase.of(i, l));
        }
        b.iload(1);
        if (fields.isEmpty()) b.pop().goto_(unknown);
        else b.tableswitch(0, fields.size() - 1, unknown, table);
        for (int i = 0; i < fields.size(); i++) {
            b.labelBinding(labels.get(i));
            Field f = fields.get(i);
            ClassDesc owner = desc(f.getDeclaringClass());
            ClassDesc type = desc(f.getType());
            b.aload(2).checkcast(owner);
            if (write) {
                b.aload(3);
                unbox(b, f.getType());
                b.putfield(owner, f.getName(), type).return_();
            } else {
                b.getfield(owner, f.getName(), type);
                box(b, f.getType());
                b.areturn();
            }
        }
        b.labelBinding(unknown);
        ClassDesc iae = ClassDesc.of(IllegalArgumentException.class.getName());
        b.new_(iae)
                .dup()
                .invokespecial(iae, "<init>", MethodTypeDesc.of(CD_void))
                .athrow();
    }

    private static ClassDesc desc(Class<?> c) {
        return ClassDesc.ofDescriptor(c.descriptorString());
    }

    /** The wrapper class of primitive {@code type} (Integer for int, …), as the JDK's method types know it. */
    private static ClassDesc wrapper(Class<?> type) {
        return desc(java.lang.invoke.MethodType.methodType(type).wrap().returnType());
    }

    private static void box(CodeBuilder b, Class<?> type) {
        if (!type.isPrimitive()) return;
        ClassDesc w = wrapper(type);
        b.invokestatic(w, "valueOf", MethodTypeDesc.of(w, desc(type)));
    }

    private static void unbox(CodeBuilder b, Class<?> type) {
        if (!type.isPrimitive()) {
            b.checkcast(desc(type));
            return;
        }
        ClassDesc w = wrapper(type);
        b.checkcast(w).invokevirtual(w, type.getName() + "Value", MethodTypeDesc.of(desc(type)));
    }
}
