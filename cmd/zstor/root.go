package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"qss/zstor/config"
)

// app is one invocation: the global flags, the output streams, the logger
// and the loaded config, shared by the commands.
type app struct {
	configPath string
	debug      bool
	logFile    string

	stdout, stderr io.Writer
	tty            bool // stdout is a terminal: progress bars instead of plain lines

	log     *slog.Logger
	logOut  *os.File // the --log_file, closed at exit
	cfg     *config.Config
	started bool // a command began to run: its errors are not usage errors
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// run executes the command line args and returns the exit status. Every
// failure ends as one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, log: slog.New(slog.DiscardHandler)}
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		a.tty = true
	}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if a.logOut != nil {
		a.logOut.Close()
	}
	if err == nil {
		return 0
	}
	var ue usageError
	if !a.started || errors.As(err, &ue) {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "%s (see '%s --help')\n", oneLine(err), cmd.CommandPath())
		return 2
	}
	msg := oneLine(err)
	if ctx.Err() != nil {
		msg += " (interrupted)"
	}
	fmt.Fprintln(stderr, msg)
	return 1
}

// oneLine renders an error as a single line that says it comes from zstor.
func oneLine(err error) string {
	var parts []string
	for l := range strings.Lines(err.Error()) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	msg := strings.Join(parts, " ")
	if !strings.HasPrefix(msg, "zstor") {
		msg = "zstor: " + msg
	}
	return msg
}

// notice prints a one-line remark on stderr (not a failure).
func (a *app) notice(format string, args ...any) {
	fmt.Fprintf(a.stderr, "zstor: "+format+"\n", args...)
}

// writeJSON prints v on stdout as indented JSON (the --json output).
func (a *app) writeJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// version says which build this is: the module version, and the VCS
// revision and time the binary was built from when the build recorded
// them, then the daemon protocol it speaks.
func version() string {
	v, rev, when, dirty := "(devel)", "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev
		if dirty {
			v += "-dirty"
		}
	}
	if when != "" {
		v += " " + when
	}
	return fmt.Sprintf("%s %s (daemon protocol v%d)", v, runtime.Version(), daemonProtocol)
}

// printf writes a line of the command's report on stdout.
func (a *app) printf(format string, args ...any) {
	fmt.Fprintf(a.stdout, format+"\n", args...)
}

// rootCommand builds the command tree. The global flags belong to the root
// only and go before the command, as with 0-stor_v2 (whose store -d means
// --delete, not --debug).
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "zstor [-c CONFIG] [-d] [--log_file F] COMMAND",
		Short: "encrypted, erasure-coded storage of files over zdb backends",
		Long: "zstor stores files on a set of zdb backends, compressed, encrypted and erasure-coded,\n" +
			"with the command line and config file of 0-stor_v2 (zstor_v2).",
		SilenceUsage:     true,
		SilenceErrors:    true,
		TraverseChildren: true,
		Version:          version(),
		// With TraverseChildren, cobra leaves an unknown command to the
		// root's argument check.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("missing command")}
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.setupLogging(cmd.Name() == "monitor"); err != nil {
				a.started = true
				return err
			}
			return nil
		},
	}
	f := root.Flags()
	f.StringVarP(&a.configPath, "config", "c", "zstor_config.toml", "config file")
	f.BoolVarP(&a.debug, "debug", "d", false, "debug logs")
	f.StringVar(&a.logFile, "log_file", "", "append logs to this file instead of stderr")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetVersionTemplate("zstor {{.Version}}\n")
	root.AddCommand(
		a.storeCommand(),
		a.retrieveCommand(),
		a.rebuildCommand(),
		a.checkCommand(),
		a.testCommand(),
		a.statusCommand(),
		a.monitorCommand(),
		a.deleteCommand(),
		a.listCommand(),
		a.scrubCommand(),
		a.repairCommand(),
		a.gcCommand(),
		a.queueCommand(),
	)
	// Errors from here on are the command's, not the command line's
	// (cobra checks required flags after the pre-run hooks).
	for _, c := range root.Commands() {
		if runE := c.RunE; runE != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				a.started = true
				a.log.Debug("zstor", "command", cmd.Name(), "args", args, "config", a.configPath)
				return runE(cmd, args)
			}
		}
	}
	return root
}

// setupLogging sends the logs to --log_file, or to stderr. On stderr a
// command logs only errors unless -d is given, so that a failure reads as
// one line; the daemon logs from Info up.
func (a *app) setupLogging(daemon bool) error {
	level := slog.LevelError
	var w io.Writer = a.stderr
	if a.logFile != "" {
		f, err := os.OpenFile(a.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		a.logOut, w, level = f, f, slog.LevelInfo
	}
	if daemon {
		level = slog.LevelInfo
	}
	if a.debug {
		level = slog.LevelDebug
	}
	a.log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	// The config loader and libraries log through the default logger.
	slog.SetDefault(a.log)
	return nil
}

// loadConfig reads the -c file.
func (a *app) loadConfig() error {
	cfg, err := config.Load(a.configPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("zstor config %s: no such file (give the config file with -c)", a.configPath)
	}
	if err != nil {
		return err
	}
	a.cfg = cfg
	return nil
}

// withOps runs fn with the daemon's client or an in-process one (see
// openOps), after loading the config.
func (a *app) withOps(ctx context.Context, fn func(o ops, remote remoteOps) error) error {
	if err := a.loadConfig(); err != nil {
		return err
	}
	o, remote, err := a.openOps(ctx)
	if err != nil {
		return err
	}
	defer o.Close()
	return fn(o, remote)
}
