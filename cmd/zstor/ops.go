package main

import (
	"context"
	"log/slog"
	"time"

	"qss/zstor"
	"qss/zstor/pipeline"
)

// ops is what the commands need from zstor: a *zstor.Client in-process, or
// the daemon's client when a daemon listens on the configured socket.
type ops interface {
	Store(ctx context.Context, path string, o zstor.StoreOptions) (*zstor.StoreResult, error)
	Retrieve(ctx context.Context, path string, o zstor.RetrieveOptions) (*zstor.RetrieveResult, error)
	Check(ctx context.Context, key string) (pipeline.Checksum, error)
	Delete(ctx context.Context, key string) (int, error)
	List(ctx context.Context, prefix string) ([]zstor.Entry, int, error)
	Rebuild(ctx context.Context, key string) (*zstor.RebuildResult, error)
	Scrub(ctx context.Context) (*zstor.ScrubReport, error)
	Repair(ctx context.Context, prefix string) (*zstor.RepairReport, error)
	KeyFor(path string) (string, error)
	Close() error
}

// remoteOps is the daemon's client: ops plus a durable queue for store -n.
type remoteOps interface {
	ops
	Queue(ctx context.Context, path string, o zstor.StoreOptions) error
}

// Set by daemon.go's init. dialDaemon returns (nil, nil) when no daemon
// listens on socket, so the command runs in-process. runMonitor runs the
// daemon until ctx is cancelled (SIGINT/SIGTERM cancel it).
// listJobs lists the daemon's queue, readQueue the queue file of a daemon
// on socket that is not running (both nil: no daemon in this build).
// daemonProtocol is the socket protocol version this build speaks.
var (
	dialDaemon     func(ctx context.Context, socket string) (remoteOps, error)
	runMonitor     func(ctx context.Context, configPath string, logger *slog.Logger) error
	listJobs       func(ctx context.Context, r remoteOps) ([]queuedJob, error)
	readQueue      func(socket string) ([]queuedJob, error)
	daemonProtocol int
)

// queuedJob is one store waiting in the daemon's queue.
type queuedJob struct {
	Path        string    `json:"path"`
	Key         string    `json:"key,omitempty"`
	DeleteLocal bool      `json:"delete_local,omitempty"`
	Queued      time.Time `json:"queued"`
	Attempts    int       `json:"attempts"`
	Next        time.Time `json:"next"`
	LastErr     string    `json:"last_error,omitempty"`
}

var _ ops = (*zstor.Client)(nil)

// openOps returns what runs an object command: the daemon when one
// listens on the configured socket, else an in-process client (0-stor_v2
// fails when its daemon is not running; we run the command ourselves).
// remote is the same value as o when it is the daemon, nil otherwise. The
// caller closes o.
func (a *app) openOps(ctx context.Context) (o ops, remote remoteOps, err error) {
	if r := a.dial(ctx); r != nil {
		return r, r, nil
	}
	c, err := a.openClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c, nil, nil
}

// dial returns the daemon's client, or nil when no socket is configured,
// this build has no daemon, or no daemon answers.
func (a *app) dial(ctx context.Context) remoteOps {
	if a.cfg.Socket == "" || dialDaemon == nil {
		return nil
	}
	r, err := dialDaemon(ctx, a.cfg.Socket)
	if err != nil {
		// Something listens but does not answer as our daemon should:
		// say so once, and do the work here rather than fail.
		a.notice("the daemon on %s did not answer (%v); running in-process", a.cfg.Socket, err)
		return nil
	}
	if r == nil {
		a.log.Debug("no daemon listens on the socket; running in-process", "socket", a.cfg.Socket)
		return nil
	}
	a.log.Debug("running through the daemon (no progress bars)", "socket", a.cfg.Socket)
	return r
}

// openClient opens an in-process client for the loaded config.
func (a *app) openClient(ctx context.Context) (*zstor.Client, error) {
	return zstor.Open(ctx, a.cfg, zstor.Options{Logger: a.log})
}
