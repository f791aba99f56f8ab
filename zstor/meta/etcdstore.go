package meta

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of the etcd store's options.
const (
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultEtcdOpTimeout   = 10 * time.Second
)

// etcdMaxMsg bounds the gRPC messages the client sends and accepts: a value
// of MaxValueLen plus its key and framing. The etcd server has its own
// limit, --max-request-bytes (1.5 MiB by default), which must be raised to
// 5 MiB (5242880) for the largest values.
const etcdMaxMsg = MaxValueLen + 1<<20

// keysPage is how many keys Keys asks etcd for at a time.
const keysPage = 1000

// Etcd is a Store in an etcd cluster, for deployments that run one anyway:
// etcd replicates and orders the records itself (Raft), so the store is a
// thin mapping of Put, Get, Delete and Keys onto etcd's key space, under
// prefix + "/". Reads are linearizable (etcd's default).
//
// The cluster is not trusted with integrity either: every value is stored
// in the same sealed envelope as on zdb (docs/zstor-format.md, "Metadata
// envelope v2"), which binds the version and the key, so a record that was
// changed, forged or moved to another key fails authentication
// (ErrUnauthentic) instead of being returned. Values written before the
// envelope (a bare v1 seal) are read and rewritten in the envelope. A
// delete removes the key (etcd orders writes itself: no tombstone needed).
type Etcd struct {
	cli       *clientv3.Client
	prefix    string // the configured prefix plus "/"
	endpoints []string
	opTimeout time.Duration
	log       *slog.Logger
	env       envelope // sealer nil: Keys and Health only
	clock     hlc
	writer    uint32

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Etcd)(nil)

// EtcdOption configures NewEtcd.
type EtcdOption func(*etcdOptions)

type etcdOptions struct {
	dialTimeout time.Duration
	opTimeout   time.Duration
	logger      *slog.Logger
	sealer      Sealer
	now         func() time.Time
}

// WithEtcdSealer sets the Sealer of the records: pipeline.NewMetaSealer of
// the metadata master key. Without one, only Keys and Health work (enough
// for a status report); Put, Get and Delete fail.
func WithEtcdSealer(s Sealer) EtcdOption {
	return func(o *etcdOptions) { o.sealer = s }
}

// withEtcdClock replaces the wall clock of the version clock, for tests.
func withEtcdClock(now func() time.Time) EtcdOption {
	return func(o *etcdOptions) { o.now = now }
}

// WithEtcdTimeouts sets the dial timeout (connecting and authenticating)
// and the timeout of one operation, after which an operation that has not
// reached the cluster fails with ErrUnavailable (the etcd client otherwise
// waits for the cluster as long as the context allows). Zero keeps the
// default.
func WithEtcdTimeouts(dial, op time.Duration) EtcdOption {
	return func(o *etcdOptions) {
		if dial > 0 {
			o.dialTimeout = dial
		}
		if op > 0 {
			o.opTimeout = op
		}
	}
}

// WithEtcdLogger sets the logger (default slog.Default()).
func WithEtcdLogger(l *slog.Logger) EtcdOption {
	return func(o *etcdOptions) {
		if l != nil {
			o.logger = l
		}
	}
}

// NewEtcd connects to the etcd cluster at endpoints ("http(s)://host:port"
// or "host:port"), authenticating when username is set, and checks that it
// answers. Unlike NewZDB, it fails when the cluster cannot be reached: etcd
// is one service, which is either available or not, and a wrong endpoint or
// password is better reported at once.
func NewEtcd(ctx context.Context, endpoints []string, prefix, username, password string, opts ...EtcdOption) (*Etcd, error) {
	o := etcdOptions{dialTimeout: DefaultEtcdDialTimeout, opTimeout: DefaultEtcdOpTimeout, logger: slog.Default(), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if len(endpoints) == 0 {
		return nil, errors.New("meta: etcd store: no endpoints")
	}
	if (username == "") != (password == "") {
		return nil, errors.New("meta: etcd store: username and password go together")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          endpoints,
		Username:           username,
		Password:           password,
		DialTimeout:        o.dialTimeout,
		DialKeepAliveTime:  10 * time.Second,
		MaxCallSendMsgSize: etcdMaxMsg,
		MaxCallRecvMsgSize: etcdMaxMsg,
		// Failures reach the caller as errors and our own logs; the
		// client's internal zap logs would only repeat them.
		Logger: zap.NewNop(),
	})
	var w [4]byte
	rand.Read(w[:])
	s := &Etcd{
		cli:       cli,
		prefix:    prefix + "/",
		endpoints: endpoints,
		opTimeout: o.opTimeout,
		log:       o.logger.With("component", "meta-etcd"),
		env:       envelope{sealer: o.sealer},
		clock:     hlc{now: o.now},
		writer:    binary.LittleEndian.Uint32(w[:]),
	}
	if err != nil {
		return nil, s.wrap(ctx, "connect", err)
	}
	// A cheap linearizable read proves the cluster has a leader and
	// accepts our credentials.
	cctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, s.prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, s.wrap(ctx, "connect", err)
	}
	s.log.Info("metadata store on etcd", "endpoints", endpoints, "prefix", prefix)
	return s, nil
}

// wrap turns an etcd client error into ours: ErrUnavailable when the
// cluster did not answer in time or has no leader, the caller's own
// context error when that is what ended the operation, and a described
// error otherwise.
func (s *Etcd) wrap(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("meta %s on etcd: %w", op, ctx.Err())
	}
	eps := strings.Join(s.endpoints, ",")
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, clientv3.ErrNoAvailableEndpoints),
		status.Code(err) == codes.Unavailable, status.Code(err) == codes.DeadlineExceeded:
		return fmt.Errorf("%w (%s on etcd %s: %v)", ErrUnavailable, op, eps, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("meta %s on etcd %s: %w (start etcd with --max-request-bytes 5242880 for values up to %d bytes)",
			op, eps, err, MaxValueLen)
	}
	return fmt.Errorf("meta %s on etcd %s: %w", op, eps, err)
}

// opCtx bounds one operation by the operation timeout.
func (s *Etcd) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// errNoSealer is the error of Put and Get on a store opened without a
// Sealer.
var errNoSealer = errors.New("meta: etcd store opened without a sealer (WithEtcdSealer)")

// Put implements Store.
func (s *Etcd) Put(ctx context.Context, key string, value []byte) error {
	if err := checkKey("put", key); err != nil {
		return err
	}
	if err := checkValue("put", value); err != nil {
		return err
	}
	if s.env.sealer == nil {
		return errNoSealer
	}
	rec, err := s.env.encode(key, stamp{version: s.clock.next(), writer: s.writer}, false, value)
	if err != nil {
		return err
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.cli.Put(octx, s.prefix+key, string(rec)); err != nil {
		return s.wrap(ctx, "put", err)
	}
	return nil
}

// Get implements Store.
func (s *Etcd) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey("get", key); err != nil {
		return nil, err
	}
	if s.env.sealer == nil {
		return nil, errNoSealer
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, s.prefix+key)
	if err != nil {
		return nil, s.wrap(ctx, "get", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, ErrNotFound
	}
	kv := resp.Kvs[0]
	v := kv.Value
	if len(v) < 2 || v[0] != envMagic0 || v[1] != envMagic1 {
		// A bare v1 seal, as written before the envelope.
		plain, err := s.env.sealer.Open(v, []byte(key))
		if err != nil {
			return nil, fmt.Errorf("meta get on etcd: %w: %v", ErrUnauthentic, err)
		}
		s.upgrade(ctx, key, kv.ModRevision, plain)
		return plain, nil
	}
	rec, err := s.env.decode(key, v, s.clock.ceiling())
	switch {
	case errors.Is(err, errUnknownFormat), errors.Is(err, errAhead), errors.Is(err, ErrUnauthentic):
		return nil, fmt.Errorf("meta get on etcd: %w", err)
	case err != nil:
		return nil, fmt.Errorf("meta get on etcd: %w: %v", ErrUnauthentic, err)
	}
	if rec.legacy {
		// The etcd store never wrote the v1 envelope (its old values are
		// bare seals): one here was made by someone else.
		return nil, fmt.Errorf("meta get on etcd: %w: a v1 envelope", ErrUnauthentic)
	}
	s.clock.observe(rec.version)
	if rec.tombstone {
		return nil, ErrNotFound
	}
	return rec.value, nil
}

// upgrade rewrites a record read in an old format in the current envelope,
// only if nothing was written to the key since it was read (rev), so a
// concurrent write is never replaced by the old value. Best effort.
func (s *Etcd) upgrade(ctx context.Context, key string, rev int64, value []byte) {
	rec, err := s.env.encode(key, stamp{version: s.clock.next(), writer: s.writer}, false, value)
	if err == nil {
		octx, cancel := s.opCtx(ctx)
		_, err = s.cli.Txn(octx).
			If(clientv3.Compare(clientv3.ModRevision(s.prefix+key), "=", rev)).
			Then(clientv3.OpPut(s.prefix+key, string(rec))).
			Commit()
		cancel()
	}
	if err != nil {
		s.log.Debug("cannot rewrite an old metadata record in the current envelope", "err", err)
	}
}

// Delete implements Store.
func (s *Etcd) Delete(ctx context.Context, key string) error {
	if err := checkKey("delete", key); err != nil {
		return err
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.cli.Delete(octx, s.prefix+key); err != nil {
		return s.wrap(ctx, "delete", err)
	}
	return nil
}

// Keys implements Store. It lists keys page by page, every page at the
// revision of the first, so the listing is one consistent snapshot however
// long it is (unless etcd compacts that revision meanwhile: an error).
func (s *Etcd) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		from := s.prefix + prefix
		end := clientv3.GetPrefixRangeEnd(from)
		var rev int64
		for {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(keysPage)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			octx, cancel := s.opCtx(ctx)
			resp, err := s.cli.Get(octx, from, opts...)
			cancel()
			if err != nil {
				yield("", s.wrap(ctx, "keys", err))
				return
			}
			if rev == 0 {
				rev = resp.Header.Revision
			}
			for _, kv := range resp.Kvs {
				if !yield(string(kv.Key[len(s.prefix):]), nil) {
					return
				}
			}
			if !resp.More || len(resp.Kvs) == 0 {
				return
			}
			from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
}

// Health implements Store: the status of each endpoint.
func (s *Etcd) Health(ctx context.Context) []BackendHealth {
	out := make([]BackendHealth, len(s.endpoints))
	var wg sync.WaitGroup
	for i, ep := range s.endpoints {
		out[i].Address = ep
		wg.Go(func() {
			octx, cancel := s.opCtx(ctx)
			defer cancel()
			st, err := s.cli.Status(octx, ep)
			switch {
			case err != nil:
				out[i].Err = s.wrap(ctx, "status", err).Error()
			case len(st.Errors) > 0:
				out[i].Err = "etcd reports: " + strings.Join(st.Errors, "; ")
			default:
				out[i].Reachable = true
			}
		})
	}
	wg.Wait()
	return out
}

// Close closes the connection to the cluster.
func (s *Etcd) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.cli.Close() })
	return s.closeErr
}
