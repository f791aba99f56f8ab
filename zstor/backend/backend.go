// Package backend is zstor's view of its data backends: one pooled,
// authenticated zdb client per configured seq-mode namespace, the health of
// each (reachable, free space from NSINFO), and the three operations the data
// path needs on a shard: put (returning where it went), get and delete.
//
// Connections are zstor/zdbconn handles (shared with the zdb metadata
// store): dialled lazily, never under a lock other callers wait on, and
// after a failure the backend is marked down for a back-off that doubles
// from DownFor up to MaxDownFor, so that a dead backend costs a caller at
// most one timeout instead of one per shard; the next call after the pause
// tries it again, and a health probe (Probe) tries it at once.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"qss/zdb/client"
	"qss/zstor/config"
	"qss/zstor/zdbconn"
)

// Defaults for zero Options fields.
const (
	DefaultDialTimeout = 3 * time.Second
	DefaultIOTimeout   = 15 * time.Second
	DefaultDownFor     = time.Second
	DefaultMaxDownFor  = 5 * time.Second
	DefaultPoolSize    = 4
)

// ErrDown is wrapped by errors of calls refused because the backend failed
// recently and is paused.
var ErrDown = zdbconn.ErrDown

// ErrNotFound means the backend answered that the shard does not exist.
var ErrNotFound = errors.New("shard not found on backend")

// Options configure a Set.
type Options struct {
	DialTimeout time.Duration // per connection attempt; 0 = DefaultDialTimeout
	IOTimeout   time.Duration // per command; 0 = DefaultIOTimeout
	DownFor     time.Duration // pause after a first failure; 0 = DefaultDownFor, <0 = never pause
	MaxDownFor  time.Duration // the pause doubles with each further failure up to this; 0 = DefaultMaxDownFor
	PoolSize    int           // connections per backend; 0 = DefaultPoolSize
	Logger      *slog.Logger  // nil = slog.Default()
	// OnDown, when set, is called when a backend that answered before (or
	// was never tried) fails and enters its back-off: the daemon checks
	// the backends' health at once. It must not block.
	OnDown func(b *Backend, err error) `json:"-"`
}

func (o Options) withDefaults() Options {
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.IOTimeout == 0 {
		o.IOTimeout = DefaultIOTimeout
	}
	if o.DownFor == 0 {
		o.DownFor = DefaultDownFor
	}
	if o.MaxDownFor == 0 {
		o.MaxDownFor = max(DefaultMaxDownFor, o.DownFor)
	}
	if o.PoolSize == 0 {
		o.PoolSize = DefaultPoolSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Backend is one data backend: a zdb namespace in a group (failure domain).
// It connects lazily and reconnects after failures. Safe for concurrent use.
type Backend struct {
	Index  int            // position in the config, group after group
	Group  int            // index of its [[groups]] entry
	Config config.Backend // address, namespace, password

	conn *zdbconn.Conn

	latency atomic.Int64 // moving average of successful GET/SET round trips, ns
}

// ID is the backend's identity, "address/namespace", as recorded in object
// metadata. Two config entries with the same ID are the same backend.
func (b *Backend) ID() string { return ID(b.Config) }

// ID returns the identity of a configured backend (see Backend.ID).
func ID(c config.Backend) string {
	return strings.ToLower(c.Address) + "/" + c.Namespace
}

func (b *Backend) String() string { return b.Config.String() }

// Set is every configured data backend.
type Set struct {
	all  []*Backend
	byID map[string]*Backend
}

// New returns the backends of the config's groups. It does not connect;
// Connect (or the first call) does.
func New(groups []config.Group, opts Options) *Set {
	opts = opts.withDefaults()
	s := &Set{byID: map[string]*Backend{}}
	for gi, g := range groups {
		for _, cb := range g.Backends {
			b := &Backend{Index: len(s.all), Group: gi, Config: cb}
			b.conn = zdbconn.New(zdbconn.Options{
				Client: client.Options{
					Addr:        cb.Address,
					Namespace:   cb.Namespace,
					Password:    cb.Password,
					PoolSize:    opts.PoolSize,
					DialTimeout: opts.DialTimeout,
					IOTimeout:   opts.IOTimeout,
				},
				Name:     "backend " + cb.String(),
				RetryMin: opts.DownFor,
				RetryMax: opts.MaxDownFor,
				Logger:   opts.Logger,
			})
			if opts.OnDown != nil {
				b.conn.SetOnDown(func(err error) { opts.OnDown(b, err) })
			}
			s.all = append(s.all, b)
			if _, dup := s.byID[b.ID()]; !dup {
				s.byID[b.ID()] = b
			}
		}
	}
	return s
}

// All returns the backends in config order.
func (s *Set) All() []*Backend { return s.all }

// Lookup returns the backend with the given ID, or nil when the config no
// longer has it.
func (s *Set) Lookup(id string) *Backend { return s.byID[id] }

// Connect dials every backend concurrently and returns how many answered.
func (s *Set) Connect(ctx context.Context) int {
	var ok atomic.Int32
	var wg sync.WaitGroup
	for _, b := range s.all {
		wg.Go(func() {
			if _, err := b.client(ctx); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return int(ok.Load())
}

// Close closes every client.
func (s *Set) Close() error {
	for _, b := range s.all {
		b.conn.Close()
	}
	return nil
}

// client returns the connected client, dialling when there is none. A
// backend in its back-off is refused at once (ErrDown).
func (b *Backend) client(ctx context.Context) (*client.Client, error) {
	return b.conn.Client(ctx, false)
}

// report records a call's outcome: network failures start or extend the
// back-off; success and error replies (the server answered) end it.
func (b *Backend) report(ctx context.Context, err error) { b.conn.Report(ctx, err) }

// Down reports whether the backend is paused after a failure. It never
// waits for a connection attempt in progress.
func (b *Backend) Down() bool { return b.conn.Down() }

// Latency returns the moving average round trip of successful shard
// operations (0 when none yet).
func (b *Backend) Latency() time.Duration { return time.Duration(b.latency.Load()) }

func (b *Backend) observe(d time.Duration) {
	old := b.latency.Load()
	if old == 0 {
		b.latency.Store(int64(d))
		return
	}
	b.latency.Store(old + (int64(d)-old)/4)
}

// Put appends a shard to the backend's seq-mode namespace and returns the
// id zdb assigned.
func (b *Backend) Put(ctx context.Context, shard []byte) (uint64, error) {
	cl, err := b.client(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	id, err := cl.SetSeq(ctx, shard)
	b.report(ctx, err)
	if err != nil {
		return 0, fmt.Errorf("backend %s: put shard: %w", b, err)
	}
	b.observe(time.Since(start))
	return id, nil
}

// Get returns the shard stored under id (ErrNotFound when there is none).
func (b *Backend) Get(ctx context.Context, id uint64) ([]byte, error) {
	cl, err := b.client(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	v, err := cl.GetSeq(ctx, id)
	b.report(ctx, err)
	if err != nil {
		if errors.Is(err, client.ErrNotFound) {
			return nil, fmt.Errorf("backend %s: shard %d: %w", b, id, ErrNotFound)
		}
		return nil, fmt.Errorf("backend %s: get shard %d: %w", b, id, err)
	}
	b.observe(time.Since(start))
	return v, nil
}

// Delete removes the shard stored under id; a missing shard is not an
// error.
func (b *Backend) Delete(ctx context.Context, id uint64) error {
	cl, err := b.client(ctx)
	if err != nil {
		return err
	}
	err = cl.Del(ctx, client.EncodeID(id))
	b.report(ctx, err)
	if err != nil && !errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("backend %s: delete shard %d: %w", b, id, err)
	}
	return nil
}

// Health is a backend's state as seen by one NSINFO.
type Health struct {
	Backend   *Backend
	Reachable bool
	Err       error  // why not reachable
	Mode      string // as NSINFO says: "sequential" or "userkey"; data backends need sequential
	Entries   int64
	Used      int64 // data_size_bytes
	Limit     int64 // data_limits_bytes, 0 = no limit
	DiskFree  int64 // data_disk_freespace_bytes, -1 when unknown
	// Latency is how long the NSINFO round trip took (0 when not asked).
	Latency time.Duration
}

// Seq reports whether the namespace is in sequential mode (or its mode is
// unknown), as zstor's data backends must be.
func (h Health) Seq() bool { return h.Mode == "" || strings.HasPrefix(h.Mode, "seq") }

// Usable reports whether shards can be written: reachable and seq mode.
func (h Health) Usable() bool { return h.Reachable && h.Err == nil && h.Seq() }

// Free is the bytes that can still be written: the namespace limit minus
// usage, capped by the disk's free space (either may be unknown).
func (h Health) Free() int64 {
	free := int64(-1)
	if h.Limit > 0 {
		free = max(h.Limit-h.Used, 0)
	}
	if h.DiskFree >= 0 && (free < 0 || h.DiskFree < free) {
		free = h.DiskFree
	}
	return free
}

// UsagePercent is Used over Limit (or over Used+DiskFree when there is no
// limit), or -1 when unknown.
func (h Health) UsagePercent() float64 {
	total := h.Limit
	if total <= 0 && h.DiskFree >= 0 {
		total = h.Used + h.DiskFree
	}
	if total <= 0 {
		return -1
	}
	return 100 * float64(h.Used) / float64(total)
}

// Health asks the backend for its namespace info. A backend in its
// back-off is reported unreachable without being asked (see Probe).
func (b *Backend) Health(ctx context.Context) Health { return b.health(ctx, false) }

// Probe is Health, but asks the backend even during its back-off (and a
// success ends it): for health checks that must see a backend come back.
func (b *Backend) Probe(ctx context.Context) Health { return b.health(ctx, true) }

func (b *Backend) health(ctx context.Context, probe bool) Health {
	h := Health{Backend: b, DiskFree: -1}
	cl, err := b.conn.Client(ctx, probe)
	if err != nil {
		h.Err = err
		return h
	}
	ns := b.Config.Namespace
	if ns == "" {
		ns = "default"
	}
	start := time.Now()
	info, err := cl.NSInfo(ctx, ns)
	h.Latency = time.Since(start)
	b.report(ctx, err)
	if err != nil {
		h.Err = fmt.Errorf("backend %s: nsinfo: %w", b, err)
		return h
	}
	h.Reachable = true
	num := func(key string) int64 {
		n, err := strconv.ParseInt(strings.TrimSpace(info[key]), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	h.Entries = max(num("entries"), 0)
	h.Used = max(num("data_size_bytes"), 0)
	h.Limit = max(num("data_limits_bytes"), 0)
	h.DiskFree = num("data_disk_freespace_bytes")
	h.Mode = strings.TrimSpace(info["mode"])
	return h
}

// HealthAll asks every backend concurrently (Health).
func (s *Set) HealthAll(ctx context.Context) []Health { return s.healthAll(ctx, false) }

// ProbeAll probes every backend concurrently (Probe), for a health loop.
func (s *Set) ProbeAll(ctx context.Context) []Health { return s.healthAll(ctx, true) }

func (s *Set) healthAll(ctx context.Context, probe bool) []Health {
	out := make([]Health, len(s.all))
	var wg sync.WaitGroup
	for i, b := range s.all {
		wg.Go(func() { out[i] = b.health(ctx, probe) })
	}
	wg.Wait()
	return out
}
