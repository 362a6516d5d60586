package dev.kiln.cli;

import dev.kiln.os.Posix;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code kiln}: boot, drive and tear down real virtual machines. */
@Command(name = "kiln", mixinStandardHelpOptions = true, version = "kiln 0.1.0",
        description = "Boots, drives and tears down real virtual machines.",
        subcommands = {RunCommand.class, ShellCommand.class, ImageCommand.class, DoctorCommand.class, BenchCommand.class})
public final class KilnCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.err);
    }

    public static void main(String[] args) {
        CommandLine cl = new CommandLine(new KilnCommand());
        cl.setExecutionExceptionHandler((e, cmd, parsed) -> {
            System.err.println("kiln: " + e.getMessage());
            if (System.getenv("KILN_DEBUG") != null) e.printStackTrace();
            return 2;
        });
        int code = cl.execute(args);
        // Every machine is closed by now; skip the JVM's exit sequence, which idles ~300 ms on its pollers.
        // -Dkiln.fastExit=false keeps it (the launcher's AOT training run needs it to write its cache).
        if (Boolean.parseBoolean(System.getProperty("kiln.fastExit", "true"))) {
            System.out.flush();
            System.err.flush();
            Posix.exitImmediately(code);
        }
        System.exit(code);
    }
}
