package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"qss/qsfs"
	qconfig "qss/qsfs/config"
	"qss/zdbfs"
)

func mountCmd(g *globals) *cobra.Command {
	var allowOther bool
	cmd := &cobra.Command{
		Use:   "mount MOUNTPOINT",
		Short: "Mount the filesystem and serve it in the foreground until unmounted or signalled",
		Long: `Mount the filesystem on MOUNTPOINT and serve it in the foreground. umount
(or fusermount3 -u), SIGINT and SIGTERM flush everything to the local engine,
cut a last recovery point and wait up to 30 s for it to be stored (what is
not stored then is uploaded at the next start).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			log := g.logger()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runMount(ctx, cfg, args[0], zdbfs.MountOptions{AllowOther: allowOther, FSName: "qsfs"}, log, nil)
		},
	}
	cmd.Flags().BoolVar(&allowOther, "allow-other", false, "let other users use the mount (FUSE allow_other)")
	return cmd
}

// runMount mounts cfg's filesystem on dir until ctx ends or it is
// unmounted; ready, when set, is called once it serves.
func runMount(ctx context.Context, cfg *qconfig.Config, dir string, mo zdbfs.MountOptions, log *slog.Logger, ready func(webURL string)) error {
	node, closeRemote, err := openNode(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeRemote()
	closeNode := func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return node.Close(cctx)
	}
	f, err := node.NewFS(ctx, zdbfs.Config{})
	if err != nil {
		closeNode()
		return fmt.Errorf("open the filesystem: %w", err)
	}
	m, err := zdbfs.MountFS(ctx, f, dir, mo)
	if err != nil {
		f.Close(context.Background())
		closeNode()
		return err
	}
	sctx, stopControl := context.WithCancel(context.Background())
	defer stopControl()
	if err := node.ServeControl(sctx); err != nil {
		log.Warn("no control socket: qsfs status and sync will not reach this mount", "err", err)
	}
	if cfg.Metrics != "" {
		if err := serveMetrics(sctx, cfg.Metrics, node, log); err != nil {
			log.Warn("no metrics", "err", err)
		}
	}
	var ws *webServer
	if cfg.Web != "" {
		if ws, err = startWeb(cfg, dir, node, f, log, mo.FSName == "qsfs-demo"); err != nil {
			m.Unmount()
			f.Close(context.Background())
			closeNode()
			return err
		}
	}
	log.Info("qsfs mounted", "mountpoint", dir, "local", cfg.Path, "cache_size", cfg.CacheSize, "rpo", cfg.RPO)
	if ready != nil {
		url := ""
		if ws != nil {
			url = ws.URL
		}
		ready(url)
	}
	done := make(chan error, 1)
	go func() { done <- m.Wait() }()
	var ferr error
	select {
	case ferr = <-done:
	case <-ctx.Done():
		log.Info("signal: unmounting")
		if ws != nil {
			ws.Close() // before the unmount: its open files would keep the mount busy
			ws = nil
		}
		ferr = m.Unmount()
		<-done
	}
	if ws != nil {
		ws.Close()
	}
	node.ReleaseFS()
	stopControl()
	cerr := closeNode()
	if ferr != nil || cerr != nil {
		return errors.Join(ferr, cerr)
	}
	log.Info("qsfs stopped cleanly")
	return nil
}

func syncCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sync",
		Short: "Return once everything written before is stored on the backends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if c, err := qsfs.DialControl(cfg.Path); err == nil {
				return c.Sync(ctx)
			}
			// Not mounted: open the local files, store what is not stored.
			log := g.logger()
			node, closeRemote, err := openNode(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer closeRemote()
			serr := node.Sync(ctx)
			cerr := node.Close(ctx)
			return errors.Join(serr, cerr)
		},
	}
}

func restoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore",
		Short: "Bring the filesystem back from the backends into an empty local directory",
		Long: `Restore fetches the last recovery point's namespace descriptors and index
files into the config's empty [qsfs] path; data files stay on the backends
and are fetched on demand once mounted. Run "qsfs mount" next.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := g.logger()
			zc, remote, err := openRemote(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer zc.Close()
			start := time.Now()
			last := time.Time{}
			res, err := qsfs.Restore(ctx, nodeOptions(cfg, remote, log), func(done, total int) {
				if time.Since(last) > 200*time.Millisecond || done == total {
					last = time.Now()
					fmt.Fprintf(os.Stderr, "\rrestoring: %d/%d objects", done, total)
				}
			})
			fmt.Fprintln(os.Stderr)
			if err != nil {
				return err
			}
			fmt.Printf("restored recovery point %d (cut %s) into %s in %.1fs: %d objects, %d bytes; %d data files stay remote until read\n",
				res.Generation, res.Cut.Format(time.RFC3339), cfg.Path, time.Since(start).Seconds(), res.Objects, res.Bytes, res.DataFiles)
			return nil
		},
	}
}

// serveMetrics serves Prometheus metrics at http://addr/metrics until ctx
// ends: qsfs's own and the Go runtime's.
func serveMetrics(ctx context.Context, addr string, node *qsfs.Node, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(node.Collectors()...)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(l)
	log.Info("metrics", "url", "http://"+l.Addr().String()+"/metrics")
	return nil
}

// openNode opens cfg's zstor client and the node on it; closeRemote
// closes the client once the node is closed.
func openNode(ctx context.Context, cfg *qconfig.Config, log *slog.Logger) (node *qsfs.Node, closeRemote func(), err error) {
	zc, remote, err := openRemote(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	node, err = qsfs.Open(ctx, nodeOptions(cfg, remote, log))
	if err != nil {
		zc.Close()
		return nil, nil, err
	}
	return node, func() { remote.Close(); zc.Close() }, nil
}
