package dev.kiln.support;

/** Words for a POSIX shell's command line. */
public final class ShellWords {
    private ShellWords() {}

    /** One shell word that the shell reads back as {@code s}: single-quoted, each ' as '\''. */
    public static String quote(String s) {
        return "'" + s.replace("'", "'\\''") + "'";
    }
}
