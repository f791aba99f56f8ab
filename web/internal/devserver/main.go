// Command devserver serves a plain directory with the web interface, no
// qsfs behind it: for front-end development, the browser tests and the
// benchmarks (which compare it, on the same disk, with a plain Go file
// server). The dashboard is absent (no qsfs status).
//
//	go run ./web/internal/devserver -root DIR -state DIR -user demo -password demo-pass
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"qss/qsfs/users"
	"qss/web"
	"qss/web/fsys"
)

func main() {
	root := flag.String("root", "", "directory to serve (required)")
	state := flag.String("state", "", "directory for users.json and web.db (required; not inside -root)")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	user := flag.String("user", "", "add this user (if missing) with -password")
	password := flag.String("password", "", "password of -user")
	flag.Parse()
	if err := run(*root, *state, *addr, *user, *password); err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(1)
	}
}

func run(root, state, addr, user, password string) error {
	if root == "" || state == "" {
		return fmt.Errorf("-root and -state are required")
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	st, err := users.Open(state)
	if err != nil {
		return err
	}
	if user != "" {
		if err := st.Add(user, password); err != nil {
			if err := st.SetPassword(user, password); err != nil {
				return err
			}
		}
	}
	f, err := fsys.OpenRoot(root)
	if err != nil {
		return err
	}
	defer f.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ln, err := web.Listen(addr, "", "", log)
	if err != nil {
		return err
	}
	srv, err := web.New(web.Config{FS: f, Users: st, StateDir: state, Logger: log, LoopbackOnly: web.IsLoopbackListener(ln)})
	if err != nil {
		ln.Close()
		return err
	}
	defer srv.Close()
	fmt.Printf("serving %s on http://%s/\n", root, ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return web.Serve(ctx, ln, srv.Handler(), log)
}
