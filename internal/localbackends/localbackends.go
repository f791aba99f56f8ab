// Package localbackends runs a set of zdb servers inside the calling process,
// laid out as a zstor deployment needs them: on each server a seq-mode data
// namespace with a password, and on the first four a user-mode metadata
// namespace. `qsfs demo` uses it to give the filesystem real backends with no
// set-up, and tests use it to stop a backend and bring it back on the same
// address.
//
// Each server is the real thing — the zdb engine (qss/zdb) behind the RESP
// front of qss/zdb/server on a loopback TCP listener — so clients see exactly
// what a separate zdb process would show them. Backend i keeps its files
// under <dir>/backend-<i>/{data,index}; starting a Set again on the same dir
// finds the namespaces and their passwords there.
package localbackends

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"qss/zdb"
	"qss/zdb/server"
)

// Default namespace names.
const (
	DataNamespace = "qsfs-data"
	MetaNamespace = "qsfs-meta"
	// MetaBackends is how many backends carry a metadata namespace (fewer
	// when the set is smaller).
	MetaBackends = 4
)

// Options tune a Set; the zero value is fine.
type Options struct {
	// Addresses are the listen addresses of the backends, in order;
	// missing or "" entries are "127.0.0.1:0" (the OS picks a port).
	// Fixed ports let `qsfs demo` keep its config across runs.
	Addresses []string
	// AdminPassword protects the admin commands of every server (default:
	// random, see Set.AdminPassword).
	AdminPassword string
	// DataSize is the zdb data file size (default zdb.DefaultDataSize).
	DataSize int64
	// Logger receives the servers' logs (default slog.Default()).
	Logger *slog.Logger
}

// Backend describes one server of a Set.
type Backend struct {
	// Address is "127.0.0.1:port"; it stays the same across Stop/Restart.
	Address string
	// Dir holds the backend's data and index directories.
	Dir string
	// DataNamespace and DataPassword are the seq-mode namespace zstor
	// stores shards in.
	DataNamespace, DataPassword string
	// MetaNamespace and MetaPassword are the user-mode metadata namespace;
	// both "" on backends without one.
	MetaNamespace, MetaPassword string
}

// Set is a running set of in-process zdb servers. Its methods are safe for
// concurrent use.
type Set struct {
	opts  Options
	admin string

	mu       sync.Mutex
	backends []*running
}

type running struct {
	Backend
	eng  *zdb.Engine    // nil when stopped
	srv  *server.Server // nil when stopped
	done chan struct{}  // closed when Serve returned
}

// Start opens n backends under dir and serves them on loopback. On error,
// the backends started so far are closed.
func Start(ctx context.Context, dir string, n int, opts Options) (*Set, error) {
	if n < 1 {
		return nil, fmt.Errorf("localbackends: %d backends, need at least 1", n)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Set{opts: opts, admin: opts.AdminPassword}
	if s.admin == "" {
		s.admin = randomSecret()
	}
	for i := range n {
		if err := ctx.Err(); err != nil {
			s.Close()
			return nil, fmt.Errorf("localbackends: %w", err)
		}
		addr := "127.0.0.1:0"
		if i < len(opts.Addresses) && opts.Addresses[i] != "" {
			addr = opts.Addresses[i]
		}
		b := &running{Backend: Backend{Address: addr, Dir: filepath.Join(dir, fmt.Sprintf("backend-%d", i))}}
		s.backends = append(s.backends, b)
		if err := s.start(ctx, b, i < MetaBackends); err != nil {
			s.Close()
			return nil, fmt.Errorf("localbackends: backend %d: %w", i, err)
		}
	}
	return s, nil
}

// start opens b's engine, makes its namespaces on the first start, and
// serves it on b.Address (which gets its real port the first time).
func (s *Set) start(ctx context.Context, b *running, withMeta bool) error {
	eng, err := zdb.Open(zdb.Options{
		DataDir:  filepath.Join(b.Dir, "data"),
		IndexDir: filepath.Join(b.Dir, "index"),
		DataSize: s.opts.DataSize,
		Logger:   s.opts.Logger.With("backend", b.Dir),
	})
	if err != nil {
		return err
	}
	if b.DataPassword, err = ensureNamespace(eng, DataNamespace, "seq"); err != nil {
		eng.Close()
		return err
	}
	b.DataNamespace = DataNamespace
	if withMeta {
		if b.MetaPassword, err = ensureNamespace(eng, MetaNamespace, "user"); err != nil {
			eng.Close()
			return err
		}
		b.MetaNamespace = MetaNamespace
	}
	l, err := listen(ctx, b.Address)
	if err != nil {
		eng.Close()
		return err
	}
	b.Address = l.Addr().String()
	srv := server.New(server.Config{
		Engine: eng, AdminPassword: s.admin, InstanceID: "tcp://" + b.Address,
		Logger: s.opts.Logger.With("backend", b.Address),
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil {
			s.opts.Logger.Error("localbackends: serve failed", "backend", b.Address, "err", err)
		}
	}()
	b.eng, b.srv, b.done = eng, srv, done
	return nil
}

// ensureNamespace creates name with a fresh random password and the given
// mode, or finds it from an earlier run; it returns the password.
func ensureNamespace(eng *zdb.Engine, name, mode string) (string, error) {
	if ns := eng.Namespace(name); ns != nil {
		pw := ns.Settings().Password
		if pw == "" {
			return "", fmt.Errorf("namespace %s exists without a password", name)
		}
		if want := map[string]zdb.Mode{"seq": zdb.ModeSeq, "user": zdb.ModeUser}[mode]; ns.Mode() != want {
			return "", fmt.Errorf("namespace %s exists in another mode than %s", name, mode)
		}
		return pw, nil
	}
	if err := eng.CreateNamespace(name); err != nil {
		return "", fmt.Errorf("create namespace %s: %w", name, err)
	}
	ns := eng.Namespace(name)
	pw := randomSecret()
	for _, p := range [][2]string{{"mode", mode}, {"public", "0"}, {"password", pw}} {
		if err := ns.SetProperty(p[0], p[1]); err != nil {
			return "", fmt.Errorf("namespace %s: set %s: %w", name, p[0], err)
		}
	}
	return pw, nil
}

// listen binds addr, retrying for a moment when it is still in use (a
// restart right after a stop).
func listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err == nil || !isAddrInUse(err) || time.Now().After(deadline) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

func randomSecret() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Len is the number of backends.
func (s *Set) Len() int { return len(s.backends) }

// AdminPassword is the password of the servers' admin commands (AUTH).
func (s *Set) AdminPassword() string { return s.admin }

// Backend returns backend i's description.
func (s *Set) Backend(i int) Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backends[i].Backend
}

// Backends returns every backend's description, in order.
func (s *Set) Backends() []Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Backend, len(s.backends))
	for i, b := range s.backends {
		out[i] = b.Backend
	}
	return out
}

// Running reports whether backend i is serving.
func (s *Set) Running(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backends[i].eng != nil
}

// Stop stops backend i as a clean shutdown: its listener and connections
// close, then its engine. Its address and files stay; Restart brings it back.
// Stopping a stopped backend does nothing.
func (s *Set) Stop(i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.backends) {
		return fmt.Errorf("localbackends: no backend %d", i)
	}
	return stop(s.backends[i])
}

func stop(b *running) error {
	if b.eng == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.srv.Close(ctx)
	<-b.done
	err := b.eng.Close()
	b.eng, b.srv, b.done = nil, nil, nil
	if err != nil {
		return fmt.Errorf("localbackends: close %s: %w", b.Address, err)
	}
	return nil
}

// Restart starts a stopped backend i again on the same address, from its
// files. Restarting a running backend stops it first.
func (s *Set) Restart(ctx context.Context, i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.backends) {
		return fmt.Errorf("localbackends: no backend %d", i)
	}
	b := s.backends[i]
	if err := stop(b); err != nil {
		return err
	}
	if err := s.start(ctx, b, i < MetaBackends); err != nil {
		return fmt.Errorf("localbackends: restart backend %d: %w", i, err)
	}
	return nil
}

// Close stops every backend.
func (s *Set) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, b := range s.backends {
		errs = append(errs, stop(b))
	}
	return errors.Join(errs...)
}

// ZstorConfig renders the zstor part of a config (0-stor_v2 TOML) for the
// set: minimal_shards k, expected_shards n, the data master key (64 hex
// digits), snappy compression, a zdb metadata store on the metadata
// namespaces, and one group of every data namespace. It is a complete zstor
// config, and the start of a qsfs.toml (which adds [qsfs]).
func (s *Set) ZstorConfig(k, n int, key string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "minimal_shards = %d\nexpected_shards = %d\n\n", k, n)
	fmt.Fprintf(&b, "[encryption]\nalgorithm = \"AES\"\nkey = %q\n\n", key)
	b.WriteString("[compression]\nalgorithm = \"snappy\"\n\n")
	b.WriteString("[meta]\ntype = \"zdb\"\n\n[meta.config]\nprefix = \"qsfs-meta\"\n")
	backends := s.Backends()
	for _, be := range backends {
		if be.MetaNamespace != "" {
			fmt.Fprintf(&b, "\n[[meta.config.backends]]\naddress = %q\nnamespace = %q\npassword = %q\n", be.Address, be.MetaNamespace, be.MetaPassword)
		}
	}
	b.WriteString("\n[[groups]]\n")
	for _, be := range backends {
		fmt.Fprintf(&b, "\n[[groups.backends]]\naddress = %q\nnamespace = %q\npassword = %q\n", be.Address, be.DataNamespace, be.DataPassword)
	}
	return b.String()
}
