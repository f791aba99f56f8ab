// Command davbench serves a directory over WebDAV the way qsfs does
// (fsys.OpenRoot, dav.New, auth.Basic with a users.Store) on loopback,
// for bench/webdav.sh. It prints "listening on URL" once it accepts
// connections and runs until interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"qss/qsfs/users"
	"qss/web/auth"
	"qss/web/dav"
	"qss/web/fsys"
)

func main() {
	dir := flag.String("dir", "", "directory to serve (required)")
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	user := flag.String("user", "bench", "user name")
	pass := flag.String("pass", "", "password (8 bytes or more, required)")
	flag.Parse()
	if err := run(*dir, *addr, *user, *pass); err != nil {
		fmt.Fprintln(os.Stderr, "davbench:", err)
		os.Exit(1)
	}
}

func run(dir, addr, user, pass string) error {
	if dir == "" || pass == "" {
		return errors.New("-dir and -pass are required")
	}
	// The user file lives in a temporary directory, removed at exit.
	udir, err := os.MkdirTemp("", "davbench-users-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(udir)
	st, err := users.Open(udir)
	if err != nil {
		return err
	}
	if err := st.Add(user, pass); err != nil {
		return err
	}
	root, err := fsys.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a := auth.New(auth.Options{Users: st, Logger: log})
	mux := http.NewServeMux()
	mux.Handle("/dav/", a.Basic(dav.New(root, dav.Options{Logger: log})))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Printf("listening on http://%s/dav/\n", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
