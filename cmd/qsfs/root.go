package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"qss/qsfs"
	qconfig "qss/qsfs/config"
	"qss/zstor"
)

func version() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return fmt.Sprintf("%s %s (manifest v%d)", v, runtime.Version(), qsfs.ManifestVersion)
}

type globals struct {
	config  string
	verbose bool
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "qsfs",
		Short: "The quantum safe filesystem: a local folder backed up to many zdb backends",
		Long: `qsfs mounts a filesystem whose files live in a local zdb engine, are stored
compressed, encrypted and erasure-coded on zdb backends (zstor) within the
configured RPO, leave the local disk under a cache cap, come back on demand,
and are restorable on a fresh machine from the config file alone.

Start with "qsfs demo" (everything on this machine), or "qsfs init" to write
a config for real backends.`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("qsfs {{.Version}}\n")
	root.PersistentFlags().StringVarP(&g.config, "config", "c", "qsfs.toml", "config file")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log debug messages")
	root.AddCommand(mountCmd(g), syncCmd(g), statusCmd(g), restoreCmd(g), userCmd(g), demoCmd(g), initCmd(g))
	return root
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func (g *globals) load() (*qconfig.Config, error) {
	return qconfig.Load(g.config)
}

// openRemote opens the zstor client of a config.
func openRemote(ctx context.Context, cfg *qconfig.Config, log *slog.Logger) (*zstor.Client, *qsfs.ZstorRemote, error) {
	c, err := zstor.Open(ctx, cfg.Zstor, zstor.Options{Logger: quieter(log, "zstor")})
	if err != nil {
		return nil, nil, err
	}
	return c, qsfs.NewZstorRemote(c), nil
}

func nodeOptions(cfg *qconfig.Config, r qsfs.Remote, log *slog.Logger) qsfs.Options {
	return qsfs.Options{
		Dir: cfg.Path, CacheSize: cfg.CacheSize, RPO: cfg.RPO, DataFileSize: cfg.DataFileSize,
		UploadConcurrency: cfg.UploadConcurrency, GCGrace: cfg.GCGrace, BackpressureWait: cfg.WriteWait,
		Remote: r, Logger: log,
	}
}

// quieter is log for a part whose info messages (one per stored object)
// would drown the rest: warnings and errors only, unless --verbose.
func quieter(log *slog.Logger, part string) *slog.Logger {
	return slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("part", part)
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return (l >= h.min || h.Handler.Enabled(ctx, slog.LevelDebug)) && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
