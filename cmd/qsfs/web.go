package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"syscall"
	"time"

	"qss/qsfs"
	qconfig "qss/qsfs/config"
	"qss/web"
	"qss/web/fsys"
	"qss/zdbfs"
)

// webServer is the web interface of a mounted node.
type webServer struct {
	srv  *web.Server
	root *fsys.Root
	URL  string
	stop context.CancelFunc
	done chan error
}

// startWeb serves the web interface on cfg.Web over the mount at mnt
// (serving through the mount keeps one view of the files: the kernel's
// caches stay coherent with what the web changes). fallback lets the demo
// take a free port when the configured one is taken.
func startWeb(cfg *qconfig.Config, mnt string, node *qsfs.Node, f *zdbfs.FS, log *slog.Logger, fallback bool) (*webServer, error) {
	ln, err := web.Listen(cfg.Web, cfg.WebTLSCert, cfg.WebTLSKey, log)
	if err != nil && fallback && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(cfg.Web)
		ln, err = web.Listen(net.JoinHostPort(host, "0"), cfg.WebTLSCert, cfg.WebTLSKey, log)
	}
	if err != nil {
		return nil, err
	}
	root, err := fsys.OpenDir(mnt)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("web: open the mount: %w", err)
	}
	st, err := usersOf(cfg)
	if err != nil {
		ln.Close()
		root.Close()
		return nil, err
	}
	srv, err := web.New(web.Config{
		FS: root, Users: st, StateDir: cfg.Path, Status: node.Status, TLS: cfg.WebTLSCert != "",
		LoopbackOnly: web.IsLoopbackListener(ln),
		Free:         func() (int64, error) { return freeBytes(mnt) },
		Resident:     residentFunc(node, f),
		Logger:       log.With("part", "web"),
	})
	if err != nil {
		ln.Close()
		root.Close()
		return nil, err
	}
	scheme := "http"
	if cfg.WebTLSCert != "" {
		scheme = "https"
	}
	ctx, stop := context.WithCancel(context.Background())
	w := &webServer{srv: srv, root: root, URL: scheme + "://" + ln.Addr().String() + "/", stop: stop, done: make(chan error, 1)}
	go func() { w.done <- web.Serve(ctx, ln, srv.Handler(), log) }()
	log.Info("web interface", "url", w.URL)
	return w, nil
}

// Close stops serving (requests in flight get 5 s) and closes the state.
func (w *webServer) Close() error {
	w.stop()
	err := <-w.done
	return errors.Join(err, w.srv.Close(), w.root.Close())
}

// residentFunc tells whether a file's data is on this machine: the
// mount's inode number is zdbfs's, whose sampled block keys qsfs looks up.
func residentFunc(node *qsfs.Node, f *zdbfs.FS) func(string, fs.FileInfo) (bool, bool) {
	return func(name string, st fs.FileInfo) (bool, bool) {
		if !st.Mode().IsRegular() {
			return false, false
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return false, false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		keys, err := f.DataKeys(ctx, sys.Ino, 8)
		if err != nil || len(keys) == 0 {
			return false, err == nil // inline or empty: local
		}
		return node.Resident(keys)
	}
}

// freeBytes is the free space of the filesystem at dir, as df shows it.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
