package dev.gmem.cli;

import dev.gmem.fc.ControlSocket;
import dev.gmem.fc.Keeper;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(
        name = "fc-keeper",
        header = "Hold the VMs' userfaultfds for gmem fc-handler, so that its VMs outlive every serving process.",
        mixinStandardHelpOptions = true,
        description = {
            "A small daemon, run as its own service beside gmem fc-handler --state-dir DIR --keeper SOCKET: each handler gives",
            "it every VM's userfaultfd and its VMM's pidfd, and a handler that takes the VMs over after the serving process",
            "died takes the userfaultfds back from it. It is for handlers that may not take them from the VMMs themselves",
            "(pidfd_getfd needs root or CAP_SYS_PTRACE over the VMM: a jailed VMM under another uid). It reads no event and",
            "maps no memory; a VM's descriptors are closed when its handler forgets it or its VMM exits. What it holds dies",
            "with it: VMs survive a restart of the serving process, not of the keeper. SOCKET is mode 0600: run it as the",
            "handler's user. One line on stdout when ready, and one on stderr for each VM kept, given and let go.",
            "gmem fc-keeper --socket SOCKET --list prints what a running keeper holds."
        })
final class FcKeeperCommand implements Callable<Integer> {
    @Option(
            names = "--socket",
            required = true,
            paramLabel = "PATH",
            description = "The Unix socket it listens on (the handlers' --keeper).")
    Path socket;

    @Option(
            names = "--list",
            description = "Do not keep: print the VMs that the keeper on --socket holds, and for how long.")
    boolean list;

    @CommandLine.Mixin
    Options.Json json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    record Ready(String event, String socket) {}

    record Stopped(String event, String signal, int dropped) {}

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        String name = spec.qualifiedName();
        if (list) return printList(out);
        Consumer<String> log = l -> {
            synchronized (err) {
                err.println(name + ": " + l);
                err.flush();
            }
        };
        Keeper keeper = Keeper.start(socket, log);
        java.util.concurrent.CountDownLatch stopped = new java.util.concurrent.CountDownLatch(1);
        Signals.onStop(signal -> {
            int held = keeper.list().size();
            keeper.close();
            line(
                    out,
                    json.on
                            ? Json.oneLine(new Stopped("stopped", signal, held))
                            : name + ": stopped (" + signal + "); "
                                    + (held == 0
                                            ? "it held nothing"
                                            : "the descriptors of " + held
                                                    + " VMs closed: they are taken over now only where pidfd_getfd is allowed"));
            stopped.countDown();
            return 0;
        });
        line(out, json.on ? Json.oneLine(new Ready("ready", socket.toString())) : name + ": keeping on " + socket);
        stopped.await(); // until a signal stops it
        return 0;
    }

    private int printList(PrintWriter out) throws java.io.IOException {
        ControlSocket.Answer a = ControlSocket.askForDescriptors(socket, "list", List.of(), Keeper.NAME);
        tools.jackson.databind.JsonNode r = Json.mapper().readTree(a.text());
        if (!r.has("kept")) throw new java.io.IOException("the keeper on " + socket + " says: " + a.text());
        if (json.on) {
            out.println(a.text());
        } else {
            out.printf(
                    "%s on %s: %d VMs kept%n",
                    spec.qualifiedName(), socket, r.path("kept").size());
            for (tools.jackson.databind.JsonNode k : r.path("kept"))
                out.printf(
                        java.util.Locale.ROOT,
                        "  %-32s pid %-8d held %.1f s%n",
                        k.path("key").asString(),
                        k.path("pid").asInt(),
                        k.path("held_ms").asDouble() / 1000);
        }
        out.flush();
        return 0;
    }

    private static void line(PrintWriter out, String s) {
        synchronized (out) {
            out.println(s);
            out.flush();
        }
    }
}
