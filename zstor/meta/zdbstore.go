package meta

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"qss/zdb/client"
	"qss/zstor/config"
	"qss/zstor/zdbconn"
)

// Defaults of the zdb store's options. Metadata records are small (a few
// KiB, 4 MiB at most), so the timeouts are much shorter than the zdb
// client's, which are sized for data shards.
const (
	DefaultZDBDialTimeout = 3 * time.Second
	DefaultZDBIOTimeout   = 10 * time.Second
	DefaultZDBPoolSize    = 4
	DefaultZDBRetryMin    = time.Second
	DefaultZDBRetryMax    = 30 * time.Second
)

// closeGrace is how long Close lets background writes (the replicas beyond
// the quorum, read repairs) finish before cancelling them.
const closeGrace = 5 * time.Second

// ZDB is a Store over N user-mode zdb namespaces ("metadata backends").
//
// Every record is written to every backend in an envelope carrying a
// version and a tombstone flag, sealed with the Sealer together with the
// key (docs/zstor-format.md, "Metadata envelope v2"); a write succeeds once
// a majority (⌊N/2⌋+1) acknowledged it. A read asks every backend, returns
// the newest authentic version once a majority answered, and writes that
// version back to the backends that answered with an older one, a bad one
// or none (read repair); what fails authentication is never copied. A delete writes a tombstone, so a
// backend that missed it cannot bring the record back. Any majority of
// answers therefore includes a backend that took part in the last
// successful write, which is what makes losing a minority of the backends
// harmless: with four, one may be down; with three of four down every
// operation fails with ErrUnavailable.
//
// Keys are stored as prefix + "/" + key, so several zstor instances (with
// prefixes of which none is a "/"-extension of another) can share
// namespaces.
//
// A backend that fails to answer (network error, timeout, refused
// authentication) is skipped for a back-off delay that doubles with every
// failure, from RetryMin up to RetryMax, and then tried again: a dead
// backend costs an operation at most its dial and I/O timeouts, and only
// once per delay.
type ZDB struct {
	prefix    string // the configured prefix plus "/"
	backends  []*zbackend
	quorum    int
	opts      zdbOptions
	opTimeout time.Duration // bound on one backend's part of an operation
	log       *slog.Logger
	clock     hlc
	writer    uint32
	env       envelope

	bg     context.Context // cancelled when Close gives up waiting
	stopBG context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // backend calls and read repairs in flight

	repairs atomic.Int64 // read repairs written, for tests and logs
}

var _ Store = (*ZDB)(nil)

// ZDBOption configures NewZDB.
type ZDBOption func(*zdbOptions)

type zdbOptions struct {
	dialTimeout time.Duration
	ioTimeout   time.Duration
	poolSize    int
	retryMin    time.Duration
	retryMax    time.Duration
	logger      *slog.Logger
	now         func() time.Time
	sealer      Sealer
}

// WithSealer sets the Sealer of the records (required):
// pipeline.NewMetaSealer of the metadata master key.
func WithSealer(s Sealer) ZDBOption {
	return func(o *zdbOptions) { o.sealer = s }
}

// WithTimeouts sets the dial timeout (connecting, authenticating and
// selecting the namespace) and the I/O timeout (one command's round trip)
// of every backend. Zero keeps the default.
func WithTimeouts(dial, io time.Duration) ZDBOption {
	return func(o *zdbOptions) {
		if dial > 0 {
			o.dialTimeout = dial
		}
		if io > 0 {
			o.ioTimeout = io
		}
	}
}

// WithPoolSize bounds the open connections per backend.
func WithPoolSize(n int) ZDBOption {
	return func(o *zdbOptions) {
		if n > 0 {
			o.poolSize = n
		}
	}
}

// WithRetry sets the back-off of a failed backend: it is skipped for min
// after its first failure, twice as long after each further one, at most
// max, and used again as soon as it answers.
func WithRetry(min, max time.Duration) ZDBOption {
	return func(o *zdbOptions) {
		if min > 0 {
			o.retryMin = min
		}
		if max > 0 {
			o.retryMax = max
		}
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) ZDBOption {
	return func(o *zdbOptions) {
		if l != nil {
			o.logger = l
		}
	}
}

// withClock replaces the wall clock of the version clock, for tests.
func withClock(now func() time.Time) ZDBOption {
	return func(o *zdbOptions) { o.now = now }
}

// NewZDB returns a Store over backends (user-mode zdb namespaces), with
// keys stored under prefix + "/". It connects to every backend before
// returning, but tolerates unreachable ones: they are retried later, and
// operations fail with ErrUnavailable while fewer than a majority answer.
// So NewZDB fails only on invalid arguments or when ctx ends.
func NewZDB(ctx context.Context, backends []config.Backend, prefix string, opts ...ZDBOption) (*ZDB, error) {
	o := zdbOptions{
		dialTimeout: DefaultZDBDialTimeout,
		ioTimeout:   DefaultZDBIOTimeout,
		poolSize:    DefaultZDBPoolSize,
		retryMin:    DefaultZDBRetryMin,
		retryMax:    DefaultZDBRetryMax,
		logger:      slog.Default(),
		now:         time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.retryMax < o.retryMin {
		o.retryMax = o.retryMin
	}
	if len(backends) == 0 {
		return nil, errors.New("meta: zdb store: no backends")
	}
	if o.sealer == nil {
		return nil, errors.New("meta: zdb store: no sealer (WithSealer)")
	}
	if maxPrefix := client.MaxKeyLen - 1 - MaxKeyLen; len(prefix) > maxPrefix {
		return nil, fmt.Errorf("meta: zdb store: prefix of %d bytes, the limit is %d (zdb keys are at most %d bytes)",
			len(prefix), maxPrefix, client.MaxKeyLen)
	}
	var w [4]byte
	rand.Read(w[:])
	s := &ZDB{
		prefix: prefix + "/",
		quorum: len(backends)/2 + 1,
		opts:   o,
		// A backend's part of an operation may take a dial and the
		// namespace check, then a command that may have to dial again.
		opTimeout: 2 * (o.dialTimeout + o.ioTimeout),
		log:       o.logger.With("component", "meta-zdb"),
		clock:     hlc{now: o.now},
		writer:    binary.LittleEndian.Uint32(w[:]),
		env:       envelope{sealer: o.sealer},
	}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	seen := make(map[string]bool)
	for i, b := range backends {
		if b.Address == "" {
			return nil, fmt.Errorf("meta: zdb store: backend %d has no address", i)
		}
		id := b.Address + "/" + defaultNS(b.Namespace)
		if seen[id] {
			// The same namespace twice would count twice towards
			// the majority: a write "on a majority" could then sit
			// on a minority of the distinct namespaces.
			return nil, fmt.Errorf("meta: zdb store: backend %s is listed twice", b)
		}
		seen[id] = true
		s.backends = append(s.backends, newZBackend(s, b))
	}

	// Connect to every backend concurrently, so that the dead ones cost
	// one dial timeout in all, not one each.
	var wg sync.WaitGroup
	var up atomic.Int64
	for _, b := range s.backends {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, s.opTimeout)
			defer cancel()
			if _, err := b.client(cctx, true); err == nil {
				up.Add(1)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("meta: zdb store: %w", err)
	}
	lvl := slog.LevelInfo
	if int(up.Load()) < s.quorum {
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "metadata store on zdb", "backends", len(s.backends), "quorum", s.quorum,
		"reachable", up.Load(), "prefix", prefix)
	return s, nil
}

func defaultNS(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// Put implements Store.
func (s *ZDB) Put(ctx context.Context, key string, value []byte) error {
	if err := checkKey("put", key); err != nil {
		return err
	}
	if err := checkValue("put", value); err != nil {
		return err
	}
	rec, err := s.env.encode(key, stamp{version: s.clock.next(), writer: s.writer}, false, value)
	if err != nil {
		return err
	}
	return s.write(ctx, "put", key, rec)
}

// Delete implements Store: it writes a tombstone, whether or not the key has
// a record (finding out would cost a quorum read).
func (s *ZDB) Delete(ctx context.Context, key string) error {
	if err := checkKey("delete", key); err != nil {
		return err
	}
	rec, err := s.env.encode(key, stamp{version: s.clock.next(), writer: s.writer}, true, nil)
	if err != nil {
		return err
	}
	return s.write(ctx, "delete", key, rec)
}

// Get implements Store.
func (s *ZDB) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey("get", key); err != nil {
		return nil, err
	}
	rec, err := s.read(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.tombstone {
		return nil, ErrNotFound
	}
	// The record's bytes may still be written back by read repair: the
	// caller gets its own copy.
	return bytes.Clone(rec.value), nil
}

// reply is one backend's answer to a point operation.
type reply struct {
	idx  int
	data []byte
	err  error
}

// fanout runs fn on every backend concurrently and delivers one reply per
// backend on the returned channel (buffered, so nobody has to read them
// all). The calls run under a context detached from ctx's cancellation and
// bounded by opTimeout, so that the replicas beyond the quorum are still
// written after the operation has returned; Close cancels them if they take
// too long.
func (s *ZDB) fanout(ctx context.Context, op string, fn func(context.Context, *client.Client) ([]byte, error)) (<-chan reply, error) {
	if !s.begin(len(s.backends)) {
		return nil, fmt.Errorf("meta %s: %w", op, client.ErrClosed)
	}
	out := make(chan reply, len(s.backends))
	for i, b := range s.backends {
		go func() {
			defer s.wg.Done()
			octx, cancel := s.detach(ctx)
			defer cancel()
			data, err := b.do(octx, fn)
			out <- reply{idx: i, data: data, err: err}
		}()
	}
	return out, nil
}

// begin reserves n slots of background work, or reports that the store is
// closed.
func (s *ZDB) begin(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(n)
	return true
}

// detach returns a context with ctx's values but not its cancellation,
// bounded by opTimeout and cancelled by Close.
func (s *ZDB) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opTimeout)
	stop := context.AfterFunc(s.bg, cancel)
	return octx, func() { stop(); cancel() }
}

// write stores an envelope on every backend and returns once a majority
// acknowledged it; the other backends are still written in the background.
// A failed write may have reached some backends, and may so become visible
// later (through read repair), as with any replicated store.
func (s *ZDB) write(ctx context.Context, op, key string, rec []byte) error {
	zkey := []byte(s.prefix + key)
	ch, err := s.fanout(ctx, op, func(ctx context.Context, cl *client.Client) ([]byte, error) {
		_, _, err := cl.Set(ctx, zkey, rec)
		return nil, err
	})
	if err != nil {
		return err
	}
	acks := 0
	var errs []string
	for acks < s.quorum {
		select {
		case r := <-ch:
			if r.err == nil {
				acks++
				continue
			}
			errs = append(errs, s.backends[r.idx].name+": "+r.err.Error())
			if len(errs) > len(s.backends)-s.quorum {
				return s.unavailable(op, acks, errs)
			}
		case <-ctx.Done():
			return fmt.Errorf("meta %s: %w (%d of %d needed acknowledgements)", op, ctx.Err(), acks, s.quorum)
		}
	}
	return nil
}

// unavailable is the error of an operation that could not reach a quorum;
// it names every backend that failed, and why.
// An operation gives up as soon as a quorum has become impossible, without
// waiting for the backends that are still silent.
func (s *ZDB) unavailable(op string, answered int, errs []string) error {
	return fmt.Errorf("%w (%s needs %d of %d backends, %d answered, %d failed: %s)",
		ErrUnavailable, op, s.quorum, len(s.backends), answered, len(errs), strings.Join(errs, "; "))
}

// answer is a backend's usable answer to a read: rec is nil when the
// backend holds no record, or one that is corrupt or fails authentication
// (then bad is set).
type answer struct {
	idx         int
	rec         *record
	bad         bool
	unauthentic bool // bad, and well-formed: it fails the seal
}

// toAnswer turns a GET reply for key into an answer; ok is false when the
// backend did not give a usable answer: an error, an envelope format this
// code does not know, or a version too far ahead of the clock (neither
// used nor overwritten). Replicas are normally byte for byte the same: an
// envelope equal to one already authenticated in answers is not opened
// again.
func (s *ZDB) toAnswer(key string, r reply, answers []answer) (a answer, ok bool, err error) {
	a.idx = r.idx
	if errors.Is(r.err, client.ErrNotFound) {
		return a, true, nil
	}
	if r.err != nil {
		return a, false, r.err
	}
	for _, prev := range answers {
		if prev.rec != nil && bytes.Equal(prev.rec.raw, r.data) {
			a.rec = prev.rec
			return a, true, nil
		}
	}
	rec, err := s.env.decode(key, r.data, s.clock.ceiling())
	switch {
	case errors.Is(err, errUnknownFormat), errors.Is(err, errAhead):
		s.log.Warn("metadata record refused", "backend", s.backends[r.idx].name, "err", err)
		return a, false, err
	case err != nil:
		// Never used, never copied to another backend; overwritten
		// by read repair only with an authentic record.
		s.log.Warn("metadata record fails its checks, ignored", "backend", s.backends[r.idx].name, "err", err)
		a.bad = true
		a.unauthentic = errors.Is(err, ErrUnauthentic)
	default:
		a.rec = &rec
	}
	return a, true, nil
}

// newest returns the answer with the highest stamp, nil when no answer
// holds an authentic record.
func newest(answers []answer) *record {
	var best *record
	for _, a := range answers {
		if a.rec != nil && (best == nil || best.stamp.less(a.rec.stamp)) {
			best = a.rec
		}
	}
	return best
}

// read asks every backend for key and returns the newest authentic record
// once a majority answered (nil when none of them holds one;
// ErrUnauthentic when more than half of the answers hold records that fail
// authentication — well-formed, but the seal does not open — and none holds
// an authentic one). The remaining answers
// are awaited in the background, and every backend that answered with an
// older record, a bad one or none is sent the newest.
func (s *ZDB) read(ctx context.Context, op, key string) (*record, error) {
	zkey := []byte(s.prefix + key)
	ch, err := s.fanout(ctx, op, func(ctx context.Context, cl *client.Client) ([]byte, error) {
		return cl.Get(ctx, zkey)
	})
	if err != nil {
		return nil, err
	}
	var answers []answer
	var errs []string
	received := 0
	for len(answers) < s.quorum {
		select {
		case r := <-ch:
			received++
			a, ok, err := s.toAnswer(key, r, answers)
			if !ok {
				errs = append(errs, s.backends[r.idx].name+": "+err.Error())
				if len(errs) > len(s.backends)-s.quorum {
					return nil, s.unavailable(op, len(answers), errs)
				}
				continue
			}
			answers = append(answers, a)
		case <-ctx.Done():
			return nil, fmt.Errorf("meta %s: %w (%d of %d needed answers)", op, ctx.Err(), len(answers), s.quorum)
		}
	}
	best := newest(answers)
	if best != nil {
		s.clock.observe(best.version)
	}
	if s.begin(1) {
		go func() {
			defer s.wg.Done()
			s.repair(ctx, key, answers, ch, len(s.backends)-received)
		}()
	}
	if best == nil {
		bad := 0
		for _, a := range answers {
			if a.unauthentic {
				bad++
			}
		}
		if 2*bad > len(answers) {
			return nil, fmt.Errorf("meta %s: %w (%d of %d answers)", op, ErrUnauthentic, bad, len(answers))
		}
	}
	return best, nil
}

// repair waits for the pending replies of a read, then writes the newest
// authentic record to every backend that answered with an older, bad or
// missing one. A backend without the record needs no tombstone: it has
// nothing to bring back. A newest record in the v1 envelope is first
// rewritten as v2 (a v1 tombstone is left as it is: its header was never
// authenticated). What fails authentication is never copied. Best effort:
// failures are only logged.
func (s *ZDB) repair(ctx context.Context, key string, answers []answer, ch <-chan reply, pending int) {
	zkey := []byte(s.prefix + key)
	for ; pending > 0; pending-- {
		if a, ok, _ := s.toAnswer(key, <-ch, answers); ok {
			answers = append(answers, a)
		}
	}
	best := newest(answers)
	if best == nil {
		return
	}
	if best.legacy {
		if best.tombstone {
			return
		}
		up, err := s.env.upgrade(key, best)
		if err != nil {
			s.log.Warn("cannot rewrite a v1 metadata record as v2", "err", err)
			return
		}
		best = up
	}
	for _, a := range answers {
		switch {
		case a.bad:
		case a.rec == nil && !best.tombstone:
		case a.rec != nil && a.rec.less(best.stamp):
		default:
			continue
		}
		b := s.backends[a.idx]
		octx, cancel := s.detach(ctx)
		var wrote bool
		_, err := b.do(octx, func(ctx context.Context, cl *client.Client) ([]byte, error) {
			// Look again right before writing: a write that landed
			// since the read must not be replaced by what was read.
			cur, err := cl.Get(ctx, zkey)
			if err != nil && !errors.Is(err, client.ErrNotFound) {
				return nil, err
			}
			if err == nil {
				rec, derr := s.env.decode(key, cur, s.clock.ceiling())
				if errors.Is(derr, errUnknownFormat) || errors.Is(derr, errAhead) || derr == nil && !rec.less(best.stamp) {
					return nil, nil
				}
			}
			_, _, err = cl.Set(ctx, zkey, best.raw)
			wrote = err == nil
			return nil, err
		})
		cancel()
		if err != nil {
			s.log.Debug("read repair failed", "backend", b.name, "err", err)
			continue
		}
		if wrote {
			s.repairs.Add(1)
			s.log.Debug("read repair", "backend", b.name, "tombstone", best.tombstone)
		}
	}
}

// Keys implements Store. It scans every backend concurrently and decides on
// the scans of a majority. A SCAN reports each key's size, which tells a
// tombstone from a live record (see the envelope), so a key is listed when
// some answering backend holds a live record for it and none a tombstone,
// and skipped when none holds a live record; only keys on which the
// backends disagree (a missed delete, a missed write after a delete) are
// read, with a quorum read that also repairs them.
func (s *ZDB) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		scans, err := s.scan(ctx, s.prefix+prefix)
		if err != nil {
			yield("", err)
			return
		}
		type tally struct{ live, tomb, other int }
		tallies := make(map[string]*tally)
		for _, m := range scans {
			for k, size := range m {
				t := tallies[k]
				if t == nil {
					t = &tally{}
					tallies[k] = t
				}
				switch {
				case s.env.isTombstoneSize(size):
					t.tomb++
				case s.env.isLiveSize(size):
					t.live++
				default:
					t.other++
				}
			}
		}
		var disputed []string
		for zk, t := range tallies {
			key := zk[len(s.prefix):]
			switch {
			case t.live > 0 && t.tomb == 0 && t.other == 0:
				if !yield(key, nil) {
					return
				}
			case t.live == 0 && t.other == 0:
				// Deleted everywhere it is known.
			default:
				disputed = append(disputed, key)
			}
		}
		for _, key := range disputed {
			rec, err := s.read(ctx, "keys", key)
			if errors.Is(err, ErrUnauthentic) {
				// It is there, but cannot be read: the caller's
				// Get reports it.
				if !yield(key, nil) {
					return
				}
				continue
			}
			if err != nil {
				yield("", err)
				return
			}
			if rec != nil && !rec.tombstone {
				if !yield(key, nil) {
					return
				}
			}
		}
	}
}

// scan lists the keys starting with zprefix, with their sizes, on every
// backend, and returns once a majority of the scans completed (the others
// are cancelled).
func (s *ZDB) scan(ctx context.Context, zprefix string) ([]map[string]int64, error) {
	type result struct {
		idx  int
		keys map[string]int64
		err  error
	}
	if !s.begin(len(s.backends)) {
		return nil, fmt.Errorf("meta keys: %w", client.ErrClosed)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.bg, cancel)
	defer stop()
	ch := make(chan result, len(s.backends))
	p := []byte(zprefix)
	for i, b := range s.backends {
		go func() {
			defer s.wg.Done()
			keys := make(map[string]int64)
			// A scan is many commands: no overall timeout, but each
			// is bounded by the I/O timeout.
			ch <- result{idx: i, keys: keys, err: b.scan(sctx, p, keys)}
		}()
	}
	var done []map[string]int64
	var errs []string
	for len(done) < s.quorum {
		select {
		case r := <-ch:
			if r.err != nil {
				errs = append(errs, s.backends[r.idx].name+": "+r.err.Error())
				if len(errs) > len(s.backends)-s.quorum {
					return nil, s.unavailable("keys", len(done), errs)
				}
				continue
			}
			done = append(done, r.keys)
		case <-ctx.Done():
			return nil, fmt.Errorf("meta keys: %w (%d of %d needed scans)", ctx.Err(), len(done), s.quorum)
		}
	}
	return done, nil
}

// Health implements Store: it pings every backend, including those in
// back-off (a success ends the back-off).
func (s *ZDB) Health(ctx context.Context) []BackendHealth {
	out := make([]BackendHealth, len(s.backends))
	var wg sync.WaitGroup
	for i, b := range s.backends {
		out[i].Address = b.name
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, s.opTimeout)
			defer cancel()
			cl, err := b.client(hctx, true)
			if err == nil {
				err = cl.Ping(hctx)
				if ctx.Err() == nil {
					b.report(hctx, err)
				}
			}
			if err != nil {
				out[i].Err = err.Error()
			} else {
				out[i].Reachable = true
			}
		})
	}
	wg.Wait()
	return out
}

// Close waits a few seconds for background writes (replicas beyond the
// quorum, read repairs), cancels what is left, and closes the connections.
func (s *ZDB) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeGrace):
		s.stopBG()
		<-done
	}
	s.stopBG()
	for _, b := range s.backends {
		b.close()
	}
	return nil
}

// zbackend is one metadata backend: a lazy, reconnecting handle with
// back-off (zstor/zdbconn, shared with the data backends) on its namespace.
type zbackend struct {
	conn *zdbconn.Conn
	name string // address/namespace, no password
}

func newZBackend(s *ZDB, cfg config.Backend) *zbackend {
	o := s.opts
	b := &zbackend{name: cfg.String()}
	b.conn = zdbconn.New(zdbconn.Options{
		Client: client.Options{
			Addr:        cfg.Address,
			Namespace:   cfg.Namespace,
			Password:    cfg.Password,
			PoolSize:    o.poolSize,
			DialTimeout: o.dialTimeout,
			IOTimeout:   o.ioTimeout,
		},
		Name:     "metadata backend " + b.name,
		RetryMin: o.retryMin,
		RetryMax: o.retryMax,
		Check: func(ctx context.Context, cl *client.Client) error {
			return checkUserMode(ctx, s.log, b.name, cl)
		},
		Logger: s.log,
	})
	return b
}

// client returns the backend's client, connecting first when there is none.
// During a back-off it fails at once, unless probe is set.
func (b *zbackend) client(ctx context.Context, probe bool) (*client.Client, error) {
	return b.conn.Client(ctx, probe)
}

// checkUserMode checks that a metadata namespace is in user mode: in
// sequential mode zdb chooses the keys, and every record would be lost.
func checkUserMode(ctx context.Context, log *slog.Logger, name string, cl *client.Client) error {
	info, err := cl.NSInfo(ctx, cl.Namespace())
	var re *client.ReplyError
	switch {
	case errors.As(err, &re):
		// A server that will not describe the namespace: the check
		// is a safeguard, not a requirement.
		log.Debug("cannot check the namespace mode", "backend", name, "err", err)
	case err != nil:
		return err
	case info["mode"] == "sequential":
		return fmt.Errorf("namespace %q is in sequential mode; metadata needs a user-mode namespace", cl.Namespace())
	}
	return nil
}

// do runs fn with the backend's client and records the outcome in the
// back-off state.
func (b *zbackend) do(ctx context.Context, fn func(context.Context, *client.Client) ([]byte, error)) ([]byte, error) {
	var data []byte
	err := b.conn.Do(ctx, false, func(ctx context.Context, cl *client.Client) error {
		var err error
		data, err = fn(ctx, cl)
		return err
	})
	return data, err
}

// scan adds the backend's keys that start with p, with their sizes, to
// keys. A scan is many commands: it has no overall timeout, but each command
// is bounded by the I/O timeout. Unlike do, it blames the backend only when
// ctx is still live: a scan outlasting its caller's deadline is no sign of a
// dead backend.
func (b *zbackend) scan(ctx context.Context, p []byte, keys map[string]int64) error {
	cl, err := b.client(ctx, false)
	if err != nil {
		return err
	}
	for e, err := range cl.ScanAll(ctx) {
		if err != nil {
			if ctx.Err() == nil {
				b.report(ctx, err)
			}
			return err
		}
		if bytes.HasPrefix(e.Key, p) {
			keys[string(e.Key)] = e.Size
		}
	}
	b.report(ctx, nil)
	return nil
}

// report updates the back-off state after a call that ended with err.
func (b *zbackend) report(ctx context.Context, err error) { b.conn.Report(ctx, err) }

func (b *zbackend) close() { b.conn.Close() }
