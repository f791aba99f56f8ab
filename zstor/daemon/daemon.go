// Package daemon is zstor's daemon (`zstor monitor`) and its client.
//
// The daemon holds one zstor.Client and serves the command line over a
// unix socket (the config's `socket`, mode 0600) with a small JSON protocol
// of our own, one request and one response per connection
// (docs/zstor-daemon.md, protocol v1). Besides the commands it runs:
//
//   - a durable queue of `store -n` jobs in a bbolt file next to the socket,
//     retried with exponential backoff until the store commits;
//   - a health loop (NSINFO of every data backend, PING of every metadata
//     backend) that classifies each backend healthy, low on space or
//     unreachable;
//   - a repair loop that rebuilds objects whose shards sit on backends that
//     left the config or stayed unreachable longer than Options.RepairAfter;
//   - a slow background scrub, whose corrupt shards are rebuilt at once;
//   - the cache cap: with `zdb_data_dir_path` and `max_zdb_data_dir_size`
//     set, the least recently used files under the directory whose stored
//     checksum equals the local file's are evicted until it fits;
//   - Prometheus metrics on 127.0.0.1:`prometheus_port`.
//
// Run returns when its context is cancelled (the command line cancels it on
// SIGTERM or SIGINT), after draining the requests and queued stores in
// flight. SIGHUP and SIGUSR1 reload the config; a config that does not load
// is logged and the running one stays.
//
// Crash story, in short (the long one is in docs/zstor-daemon.md): the
// daemon keeps no state that matters outside the queue file and zstor's
// own backends. kill -9 at any point loses at most requests that were not
// yet answered; every acknowledged queued store is on disk and runs again
// on the next start.
package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/meta"
	"qss/zstor/pipeline"
)

// Options tune the daemon beyond its config file. The zero value is the
// production setting; tests shorten the intervals.
type Options struct {
	// QueueFile is the bbolt file of the store queue. Default: the socket
	// path plus ".queue" (the socket's directory is one the daemon must be
	// able to write anyway, and the name ties the queue to the daemon
	// instance).
	QueueFile string
	// QueueWorkers is how many queued stores run at once (default 2).
	QueueWorkers int
	// RetryMin and RetryMax bound the backoff of a failing queued store
	// (defaults 1 s and 10 min): RetryMin after the first failure, doubling
	// per failure up to RetryMax.
	RetryMin, RetryMax time.Duration
	// HealthInterval is the period of the backend health check (default
	// 2 s): with HealthTimeout it bounds how late a lost backend shows in
	// the metrics and the repair backlog.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check (default 3 s): a backend that
	// does not answer NSINFO (or PING) within it counts as unreachable.
	HealthTimeout time.Duration
	// LowSpacePercent is the usage at or above which a reachable backend
	// counts as low on space (default 90).
	LowSpacePercent float64
	// RepairInterval is the period of the redundancy check, which lists
	// every object to compute the repair backlog (default 1 min). Health
	// changes and reloads trigger it at once.
	RepairInterval time.Duration
	// RepairAfter is how long a backend must stay unreachable before the
	// objects with shards on it are rebuilt elsewhere (default 10 min): a
	// reboot should not cost a rewrite of everything on it. Shards on a
	// backend that left the config are rebuilt at once.
	RepairAfter time.Duration
	// ScrubInterval is the period of the background scrub (default 24 h;
	// negative disables it). The first scrub runs one interval after start.
	ScrubInterval time.Duration
	// GCInterval is the period of the background garbage collection
	// (zstor.Client.GC; default 24 h, negative disables it). The first
	// one runs one interval after start.
	GCInterval time.Duration
	// GCGrace is the collection's grace period (default
	// zstor.DefaultGCGrace): it must exceed the longest store.
	GCGrace time.Duration
	// GCPause is slept before each candidate shard is inspected, so the
	// background collection stays slow (default 20 ms).
	GCPause time.Duration
	// CacheInterval is the period of the cache cap check (default 1 min).
	CacheInterval time.Duration
	// CacheMinAge protects files modified less than this long ago from
	// eviction (default 30 s): they may still be being written.
	CacheMinAge time.Duration
	// DrainTimeout bounds the wait for in-flight requests and queued
	// stores at shutdown (default 5 min); what is still running then is
	// cancelled (a cancelled queued store stays queued).
	DrainTimeout time.Duration
	// MetricsHost is the address the metrics server binds (default
	// 127.0.0.1: loopback unless asked otherwise).
	MetricsHost string
	// Backend tunes the data backends' timeouts.
	Backend backend.Options
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.QueueWorkers <= 0 {
		o.QueueWorkers = 2
	}
	def(&o.RetryMin, time.Second)
	def(&o.RetryMax, 10*time.Minute)
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	def(&o.HealthInterval, 2*time.Second)
	def(&o.HealthTimeout, 3*time.Second)
	if o.LowSpacePercent <= 0 {
		o.LowSpacePercent = 90
	}
	def(&o.RepairInterval, time.Minute)
	def(&o.RepairAfter, 10*time.Minute)
	def(&o.ScrubInterval, 24*time.Hour)
	def(&o.GCInterval, 24*time.Hour)
	def(&o.GCGrace, zstor.DefaultGCGrace)
	def(&o.GCPause, 20*time.Millisecond)
	def(&o.CacheInterval, time.Minute)
	def(&o.CacheMinAge, 30*time.Second)
	def(&o.DrainTimeout, 5*time.Minute)
	if o.MetricsHost == "" {
		o.MetricsHost = "127.0.0.1"
	}
	return o
}

// generation is one loaded config and the client built from it. A reload
// installs a new generation; the old one's client is closed once the
// requests and jobs that hold it are done (refs), and its background work
// is cancelled at once (ctx).
type generation struct {
	cfg    *config.Config
	client *zstor.Client
	ctx    context.Context // background loops' work; cancelled when superseded
	cancel context.CancelFunc
	refs   sync.WaitGroup
}

func (g *generation) release() { g.refs.Done() }

// retryAt is when a failed repair of an object may be tried again.
type retryAt struct {
	at    time.Time
	delay time.Duration
}

// daemon is one running `zstor monitor`.
type daemon struct {
	opts    Options
	log     *slog.Logger
	cfgPath string
	socket  string // absolute
	queue   *queue
	met     *metrics

	mu  sync.RWMutex
	gen *generation

	// loopCtx stops the background loops; opCtx is the context of requests
	// and queued stores, cancelled only when the drain times out.
	loopCtx     context.Context
	stopLoops   context.CancelFunc
	opCtx       context.Context
	cancelOps   context.CancelFunc
	loops       sync.WaitGroup
	conns       sync.WaitGroup // connections being served
	jobs        sync.WaitGroup // queued stores running
	retired     sync.WaitGroup // old generations waiting to close
	healthWake  chan struct{}
	repairWake  chan struct{}
	metricsSrv  *metricsServer
	metricsPort int
	cacheStuck  bool // over the cap with nothing evictable (logged once); cache loop only

	// Repair loop only: per-object backoff after a failed rebuild, and
	// whether "too few usable backends" was logged.
	repairRetry   map[string]retryAt
	repairBlocked bool

	state state
}

// acquire returns the current generation, held until release.
func (d *daemon) acquire() *generation {
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := d.gen
	g.refs.Add(1)
	return g
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run is `zstor monitor` with the default Options.
func Run(ctx context.Context, configPath string, logger *slog.Logger) error {
	return RunOptions(ctx, configPath, logger, Options{})
}

// RunOptions loads the config, opens the client, listens on the config's
// socket and serves until ctx is cancelled; then it stops accepting,
// drains the work in flight, and returns nil. It refuses to start when a
// daemon is live on the socket or holds the queue.
func RunOptions(ctx context.Context, configPath string, logger *slog.Logger, opts Options) error {
	if logger == nil {
		logger = slog.Default()
	}
	opts = opts.withDefaults()
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	if cfg.Socket == "" {
		return fmt.Errorf("zstor monitor: %s sets no `socket`: the daemon needs one to listen on", configPath)
	}
	// Catch the reload signals before anything can see us running: their
	// default action would end the process. One arriving during start-up
	// waits in the channel and reloads once we serve.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigc)
	socket, err := filepath.Abs(cfg.Socket)
	if err != nil {
		return fmt.Errorf("zstor monitor: socket %q: %w", cfg.Socket, err)
	}
	if err := checkNoDaemon(socket); err != nil {
		return err
	}
	if opts.QueueFile == "" {
		opts.QueueFile = socket + ".queue"
	}
	q, err := openQueue(opts.QueueFile)
	if err != nil {
		return err
	}
	defer q.close()

	d := &daemon{
		opts: opts, log: logger, cfgPath: configPath, socket: socket, queue: q,
		healthWake: make(chan struct{}, 1), repairWake: make(chan struct{}, 1),
	}
	d.repairRetry = map[string]retryAt{}
	d.state.status = map[string]string{}
	d.state.downSince = map[string]time.Time{}
	d.loopCtx, d.stopLoops = context.WithCancel(context.WithoutCancel(ctx))
	defer d.stopLoops()
	d.opCtx, d.cancelOps = context.WithCancel(context.WithoutCancel(ctx))
	defer d.cancelOps()

	g, err := d.open(cfg)
	if err != nil {
		return err
	}
	d.gen = g
	defer func() {
		d.retired.Wait()
		g := d.gen
		g.cancel()
		g.client.Close()
	}()

	d.met = newMetrics(d)
	if cfg.PrometheusPort > 0 {
		srv, err := startMetrics(d.opts.MetricsHost, cfg.PrometheusPort, d.met, logger)
		if err != nil {
			return err
		}
		d.metricsSrv, d.metricsPort = srv, cfg.PrometheusPort
	}
	defer func() {
		if d.metricsSrv != nil {
			d.metricsSrv.stop()
		}
	}()

	ln, sockInfo, err := listenSocket(socket, logger)
	if err != nil {
		return err
	}
	if cfg.PIDFile != "" {
		if err := writePIDFile(cfg.PIDFile); err != nil {
			ln.Close()
			removeIfSame(socket, sockInfo)
			return err
		}
		defer removePIDFile(cfg.PIDFile, logger)
	}

	queueCtx, stopQueue := context.WithCancel(context.Background())
	defer stopQueue()
	queueDone := make(chan struct{})
	go func() { defer close(queueDone); d.queueLoop(queueCtx) }()
	d.startLoops()
	acceptDone := make(chan struct{})
	go func() { defer close(acceptDone); d.serve(ln) }()

	logger.Info("zstor daemon ready", slog.String("socket", socket), slog.Int("pid", os.Getpid()),
		slog.String("config", configPath), slog.String("queue", opts.QueueFile), slog.Int("queued", q.len()),
		slog.Int("protocol", ProtocolVersion))

	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case sig := <-sigc:
			logger.Info("zstor daemon: reloading the config", slog.String("signal", sig.String()))
			d.reload()
		}
	}

	// Shutdown: stop accepting (a CLI started from now on finds no daemon
	// and runs in-process), drain what is in flight, stop the loops.
	logger.Info("zstor daemon stopping: draining in-flight work")
	ln.Close()
	removeIfSame(socket, sockInfo)
	<-acceptDone
	stopQueue()
	drained := make(chan struct{})
	go func() {
		<-queueDone
		d.conns.Wait()
		d.jobs.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(opts.DrainTimeout):
		logger.Warn("zstor daemon: drain timed out; cancelling what is left (queued stores stay queued)",
			slog.Duration("timeout", opts.DrainTimeout))
		d.cancelOps()
		<-drained
	}
	d.stopLoops()
	d.loops.Wait()
	logger.Info("zstor daemon stopped", slog.Int("queued", q.len()))
	return nil
}

// open builds a generation for cfg. The metadata store is the one the
// config names (zstor.Open builds only the zdb one).
func (d *daemon) open(cfg *config.Config) (*generation, error) {
	zo := zstor.Options{Logger: d.log, Backend: d.opts.Backend}
	// A shard operation that finds a backend dead triggers a health
	// check at once, so the gauges and the repair loop need not wait for
	// the next round.
	onDown := zo.Backend.OnDown
	zo.Backend.OnDown = func(b *backend.Backend, err error) {
		if onDown != nil {
			onDown(b, err)
		}
		wake(d.healthWake)
	}
	if cfg.Meta.Type == config.MetaEtcd {
		st, err := meta.NewEtcd(d.loopCtx, cfg.Meta.Endpoints, cfg.Meta.Prefix, cfg.Meta.Username, cfg.Meta.Password,
			meta.WithEtcdLogger(d.log), meta.WithEtcdSealer(pipeline.NewMetaSealer(cfg.MetaKey())))
		if err != nil {
			return nil, fmt.Errorf("zstor monitor: open metadata store: %w", err)
		}
		zo.Meta = st
	}
	c, err := zstor.Open(d.loopCtx, cfg, zo)
	if err != nil {
		if zo.Meta != nil {
			zo.Meta.Close()
		}
		return nil, err
	}
	g := &generation{cfg: cfg, client: c}
	g.ctx, g.cancel = context.WithCancel(d.loopCtx)
	return g, nil
}

// reload loads the config file again and, when it is valid, installs it.
// An invalid config is one error line; the running config stays.
func (d *daemon) reload() {
	cfg, err := config.Load(d.cfgPath)
	if err == nil && cfg.Socket == "" {
		err = errors.New("`socket` was removed")
	}
	if err != nil {
		d.log.Error("zstor daemon: config reload failed, keeping the running config", slog.String("config", d.cfgPath), slog.String("err", err.Error()))
		d.met.reloads.WithLabelValues("error").Inc()
		return
	}
	ng, err := d.open(cfg)
	if err != nil {
		d.log.Error("zstor daemon: config reload failed, keeping the running config", slog.String("config", d.cfgPath), slog.String("err", err.Error()))
		d.met.reloads.WithLabelValues("error").Inc()
		return
	}
	d.mu.Lock()
	old := d.gen
	d.gen = ng
	d.mu.Unlock()
	old.cancel()
	d.retired.Go(func() {
		old.refs.Wait()
		old.client.Close()
	})
	if s, _ := filepath.Abs(cfg.Socket); s != d.socket {
		d.log.Warn("zstor daemon: a new `socket` takes effect at the next start", slog.String("listening_on", d.socket), slog.String("configured", s))
	}
	if cfg.PIDFile != old.cfg.PIDFile {
		d.log.Warn("zstor daemon: a new `pid_file` takes effect at the next start")
	}
	if cfg.PrometheusPort != d.metricsPort {
		d.moveMetrics(cfg.PrometheusPort)
	}
	d.met.reloads.WithLabelValues("ok").Inc()
	d.log.Info("zstor daemon: config reloaded", slog.Int("k", cfg.MinimalShards), slog.Int("n", cfg.ExpectedShards),
		slog.Int("data_backends", len(cfg.Backends())))
	wake(d.healthWake)
	wake(d.repairWake)
}

// moveMetrics serves metrics on a new port (0: none). When the new port
// cannot be bound, the old server keeps running.
func (d *daemon) moveMetrics(port int) {
	if port == 0 {
		if d.metricsSrv != nil {
			d.metricsSrv.stop()
		}
		d.metricsSrv, d.metricsPort = nil, 0
		return
	}
	srv, err := startMetrics(d.opts.MetricsHost, port, d.met, d.log)
	if err != nil {
		d.log.Error("zstor daemon: metrics stay on the old port", slog.Int("port", d.metricsPort), slog.String("err", err.Error()))
		return
	}
	if d.metricsSrv != nil {
		d.metricsSrv.stop()
	}
	d.metricsSrv, d.metricsPort = srv, port
}

// serve accepts connections until the listener is closed.
func (d *daemon) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("zstor daemon: accept", slog.String("err", err.Error()))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		d.conns.Go(func() { d.handle(conn) })
	}
}

// Timeouts of the exchange itself (not of the operation).
const (
	requestTimeout = 30 * time.Second
	answerTimeout  = 30 * time.Second
)

// handle serves one connection: one request line, one response line. The
// operation is cancelled when the client goes away: after the request, a
// client sends nothing more, so anything the connection reads (EOF
// included) means it is gone.
func (d *daemon) handle(conn net.Conn) {
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(requestTimeout))
	line, err := readLine(bufio.NewReaderSize(conn, 64<<10), maxRequestBytes)
	if err != nil {
		// A client that connects and leaves (a liveness probe) or never
		// finishes its line.
		d.log.Debug("zstor daemon: no request read", slog.String("err", err.Error()))
		return
	}
	var req request
	resp := response{V: ProtocolVersion}
	var result any
	start := time.Now()
	// Progress lines and the response share the connection: out serializes
	// them, and after the response no progress line is written.
	out := &connWriter{conn: conn}
	if err = json.Unmarshal(line, &req); err != nil {
		err = badRequest(err.Error())
	} else if req.V < minProtocolVersion || req.V > ProtocolVersion {
		err = &RemoteError{Kind: KindVersion, Msg: fmt.Sprintf(
			"zstor daemon speaks protocol v%d, the client v%d: use the zstor binary of the same build as the daemon, or restart the daemon", ProtocolVersion, req.V)}
	} else {
		resp.V = req.V
		if req.V < 2 {
			// Version 1 has none of the later fields; ignore them.
			req.Protect, req.Links, req.Progress = false, false, false
		}
		conn.SetReadDeadline(time.Time{})
		ctx, cancel := context.WithCancel(d.opCtx)
		go func() {
			var b [1]byte
			conn.Read(b[:])
			cancel()
		}()
		result, err = d.do(ctx, req, out)
		cancel()
	}
	op := req.Op
	if !knownOp(op) {
		op = "unknown"
	}
	if err != nil {
		resp.Error = toWire(err)
		d.log.Debug("zstor daemon: request failed", slog.String("op", op), slog.String("err", err.Error()))
		d.met.command(op, resp.Error.Kind, time.Since(start))
	} else {
		resp.OK = true
		resp.Result = result
		d.met.command(op, "ok", time.Since(start))
	}
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(response{V: resp.V, Error: &wireError{Kind: KindFailed, Msg: "zstor daemon: " + err.Error()}})
	}
	out.last(append(b, '\n'))
}

func knownOp(op string) bool {
	switch op {
	case opPing, opStore, opQueue, opRetrieve, opCheck, opDelete, opList, opRebuild, opScrub, opRepair, opKeyFor, opJobs:
		return true
	}
	return false
}

// do runs one request with the current generation's client.
func (d *daemon) do(ctx context.Context, req request, out *connWriter) (any, error) {
	switch req.Op {
	case opPing:
		return pingResult{Version: ProtocolVersion, PID: os.Getpid(), Config: d.cfgPath}, nil
	case opJobs:
		return jobsResult{Jobs: d.queue.list()}, nil
	}
	var rep *progressReporter
	if req.Progress {
		rep = newProgressReporter(out, req.V)
		defer rep.stop()
	}
	switch req.Op {
	case opStore, opQueue, opRetrieve, opKeyFor:
		if !filepath.IsAbs(req.Path) {
			return nil, badRequest(fmt.Sprintf("%s needs an absolute path, got %q", req.Op, req.Path))
		}
	}
	g := d.acquire()
	defer g.release()
	c := g.client
	switch req.Op {
	case opStore:
		so := zstor.StoreOptions{Key: req.Key, DeleteLocal: req.DeleteLocal, Links: req.Links}
		if rep != nil {
			if fi, err := os.Stat(req.Path); err == nil {
				rep.started(fi.Size())
			}
			so.Progress = rep.add
		}
		r, err := c.Store(ctx, req.Path, so)
		if err != nil {
			return nil, err
		}
		return fromStore(r), nil
	case opQueue:
		return nil, d.enqueue(c, req)
	case opRetrieve:
		ro := zstor.RetrieveOptions{Key: req.Key, Protect: req.Protect}
		if rep != nil {
			ro.Started, ro.Progress = rep.started, rep.add
		}
		r, err := c.Retrieve(ctx, req.Path, ro)
		if err != nil {
			return nil, err
		}
		return fromRetrieve(r), nil
	case opCheck:
		sum, err := c.Check(ctx, req.Key)
		if err != nil {
			return nil, err
		}
		return checkResult{Checksum: hexSum(sum)}, nil
	case opDelete:
		n, err := c.Delete(ctx, req.Key)
		if err != nil {
			return nil, err
		}
		return deleteResult{Leaked: n}, nil
	case opList:
		es, foreign, err := c.List(ctx, req.Prefix)
		if err != nil {
			return nil, err
		}
		return listResult{Entries: fromEntries(es), Undecryptable: foreign}, nil
	case opRebuild:
		r, err := c.Rebuild(ctx, req.Key)
		if err != nil {
			return nil, err
		}
		return fromRebuild(*r), nil
	case opScrub:
		r, err := c.Scrub(ctx)
		if err != nil {
			return nil, err
		}
		d.noteScrub(r)
		return fromScrub(r), nil
	case opRepair:
		r, err := c.Repair(ctx, req.Prefix)
		if err != nil {
			return nil, err
		}
		wake(d.repairWake)
		return fromRepair(r), nil
	case opKeyFor:
		k, err := c.KeyFor(req.Path)
		if err != nil {
			return nil, err
		}
		return keyForResult{Key: k}, nil
	}
	return nil, badRequest(fmt.Sprintf("unknown op %q", req.Op))
}

// enqueue validates a `store -n` request and puts it in the queue; it
// returns once the job is on disk. The checks a store would fail on at
// once (no such file, not a regular file, not under root) are made here,
// so the caller hears of them instead of a log line later.
func (d *daemon) enqueue(c *zstor.Client, req request) error {
	fi, err := os.Stat(req.Path)
	if err != nil {
		return fmt.Errorf("zstor store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("zstor store: %s is not a regular file (queue each file of a directory)", req.Path)
	}
	if req.Key == "" {
		if _, err := c.KeyFor(req.Path); err != nil {
			return err
		}
	}
	now := time.Now()
	return d.queue.put(job{Path: req.Path, Key: req.Key, DeleteLocal: req.DeleteLocal, Queued: now, Next: now})
}

// writePIDFile writes our pid atomically (temp file, then rename).
func writePIDFile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("zstor monitor: pid_file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("zstor monitor: pid_file: %w", err)
	}
	return nil
}

// removePIDFile removes the pid file if it still holds our pid.
func removePIDFile(path string, log *slog.Logger) {
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn("zstor daemon: remove pid_file", slog.String("err", err.Error()))
	}
}
