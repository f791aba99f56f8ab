package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"qss/internal/localbackends"
	qconfig "qss/qsfs/config"
	"qss/zdbfs"
)

func demoCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "demo [DIR]",
		Short: "Run everything on this machine: six local backends, the mount, a generated key",
		Long: `Demo starts six zdb backends in this process (loopback, under DIR/backends),
writes DIR/qsfs.toml with a fresh key (kept for the next run, mode 0600),
mounts the filesystem on DIR/mnt and prints where to look. Ctrl-C unmounts and
stops everything; the data stays in DIR for the next run. DIR defaults to
./qsfs-demo.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "qsfs-demo"
			if len(args) == 1 {
				dir = args[0]
			}
			dir, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, g, dir)
		},
	}
}

func runDemo(ctx context.Context, g *globals, dir string) error {
	log := g.logger()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "qsfs.toml")
	addrs, err := os.ReadFile(filepath.Join(dir, "backends.addr"))
	var opts localbackends.Options
	opts.Logger = log.With("part", "backend")
	if err == nil {
		opts.Addresses = splitLines(string(addrs))
	}
	secret := filepath.Join(dir, "backends.admin")
	if pw, err := os.ReadFile(secret); err == nil {
		opts.AdminPassword = string(pw)
	}
	set, err := localbackends.Start(ctx, filepath.Join(dir, "backends"), 6, opts)
	if err != nil {
		return fmt.Errorf("start the local backends: %w", err)
	}
	defer set.Close()
	var list string
	for _, b := range set.Backends() {
		list += b.Address + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "backends.addr"), []byte(list), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(secret, []byte(set.AdminPassword()), 0o600); err != nil {
		return err
	}
	if _, err := os.Stat(cfgPath); errors.Is(err, fs.ErrNotExist) {
		key, err := qconfig.NewKey()
		if err != nil {
			return err
		}
		data, err := qconfig.Template(qconfig.TemplateOptions{Path: "data", CacheSize: "1G", RPO: "10s", Web: qconfig.TemplateWeb,
			Zstor: set.ZstorConfig(4, 6, key)})
		if err != nil {
			return err
		}
		if err := qconfig.WriteNew(cfgPath, data); err != nil {
			return err
		}
	}
	g.config = cfgPath
	cfg, err := g.load()
	if err != nil {
		return err
	}
	// The demo's web login (used by the web interface).
	st, err := usersOf(cfg)
	if err != nil {
		return err
	}
	pwFile := filepath.Join(dir, "demo.password")
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		var b [12]byte
		rand.Read(b[:])
		pw = []byte(hex.EncodeToString(b[:]))
		if err := st.Add("demo", string(pw)); err != nil {
			return err
		}
		if err := os.WriteFile(pwFile, pw, 0o600); err != nil {
			return err
		}
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	return runMount(ctx, cfg, mnt, zdbfs.MountOptions{FSName: "qsfs-demo"}, log, func(webURL string) {
		webLine := "off (set [qsfs] web in the config)"
		if webURL != "" {
			webLine = webURL + "   (WebDAV: " + webURL + "dav/)"
		}
		fmt.Printf(`
qsfs demo is running.
  mount point:  %s
  config:       %s   (qsfs -c %s status)
  backends:     6 local zdb servers under %s
  web:          %s
  login:        demo / %s
Press Ctrl-C to unmount and stop.
`, mnt, cfgPath, cfgPath, filepath.Join(dir, "backends"), webLine, pw)
	})
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '\n' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
