package qsfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The control socket (state/qsfs.sock, mode 0600): `qsfs status` and
// `qsfs sync` talk to the running mount over HTTP on it.
//
//	GET  /v1/status  → Status (JSON)
//	POST /v1/sync    → 204 once everything written before is stored

// SocketPath is the control socket of the local directory dir.
func SocketPath(dir string) string { return filepath.Join(dir, "state", "qsfs.sock") }

// ServeControl serves the control socket until ctx ends.
func (n *Node) ServeControl(ctx context.Context) error {
	path := SocketPath(n.opts.Dir)
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("qsfs: control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.Status(ctx))
	})
	mux.HandleFunc("POST /v1/sync", func(w http.ResponseWriter, r *http.Request) {
		if err := n.Sync(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	go srv.Serve(l)
	return nil
}

// ErrNotRunning is returned by the control client when no qsfs serves
// the directory.
var ErrNotRunning = errors.New("qsfs is not running on this directory")

// Control is a client of a running node's control socket.
type Control struct {
	c *http.Client
}

// DialControl returns a client of the node serving dir, or ErrNotRunning.
func DialControl(dir string) (*Control, error) {
	path := SocketPath(dir)
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", ErrNotRunning, dir)
	}
	conn.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Control{c: &http.Client{Transport: tr}}, nil
}

// Status asks the running node for its status.
func (c *Control) Status(ctx context.Context) (Status, error) {
	var s Status
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://qsfs/v1/status", nil)
	resp, err := c.c.Do(req)
	if err != nil {
		return s, fmt.Errorf("qsfs status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return s, fmt.Errorf("qsfs status: %s", b)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// Sync asks the running node to store everything written so far.
func (c *Control) Sync(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://qsfs/v1/sync", nil)
	resp, err := c.c.Do(req)
	if err != nil {
		return fmt.Errorf("qsfs sync: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("qsfs sync: %s", b)
	}
	return nil
}
