// Package zstor is zstor's client API: store a file as encrypted,
// erasure-coded shards on the data backends and its sealed metadata record
// in the metadata store, and retrieve, check, list, delete, scrub and repair
// what is stored. The command line (cmd/zstor) and the daemon are thin
// layers over a Client.
//
// Objects are named by keys: a file's path relative to the configured root
// (or its absolute path when no root is set). A metadata record lives under
// a keyed hash of its key, never the key itself, and is sealed by the
// metadata store with pipeline.MetaSealer (which binds the store key, the
// record's version and kind), with the object key inside, so List can
// decrypt and filter.
//
// The invariant the data path keeps: a record is committed only after every
// shard it names was acknowledged by its backend, so no record ever claims
// an object that is not stored; shards replaced by a newer version or a
// repair are freed only after the record that no longer names them was
// committed. See docs/zstor.md for the crash story.
package zstor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"

	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/meta"
	"qss/zstor/pipeline"
	"qss/zstor/placement"
)

// ErrNotStored is wrapped by errors about an object that has no metadata
// record.
var ErrNotStored = errors.New("no stored object")

// ErrNotUnderRoot is wrapped when a path lies outside the configured root.
var ErrNotUnderRoot = errors.New("path is not under the configured root")

// Options configure a Client beyond its config file.
type Options struct {
	// Meta is the metadata store; nil makes Open build the one the config
	// names. A store built by the caller must seal with
	// pipeline.NewMetaSealer(cfg.MetaKey()) (meta.WithSealer,
	// meta.WithEtcdSealer).
	Meta meta.Store
	// Backend tunes the data backends' timeouts and pools.
	Backend backend.Options
	// Logger receives the client's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Client stores and retrieves objects. It is safe for concurrent use.
type Client struct {
	cfg      *config.Config
	backends *backend.Set
	meta     meta.Store
	enc      *pipeline.Encoder
	paths    *pathHasher
	root     string // absolute, cleaned; "" when unset
	log      *slog.Logger
	hc       healthCache
	ids      identities
	keyOK    atomic.Bool // a record opened with our key, or the store was empty: skip foreignRecords
	// onShardGet, when set (tests only, SetShardGetHookForTest), is called
	// before every shard GET of a read, with the shard's location.
	onShardGet atomic.Pointer[func(Location)]
}

// Open returns a Client for cfg. Unreachable backends are not an error
// here: operations fail, or route around them, when they need them.
func Open(ctx context.Context, cfg *config.Config, opts Options) (*Client, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	store := opts.Meta
	if store == nil {
		var err error
		switch cfg.Meta.Type {
		case config.MetaZdb:
			store, err = meta.NewZDB(ctx, cfg.Meta.Backends, cfg.Meta.Prefix, meta.WithLogger(opts.Logger),
				meta.WithSealer(pipeline.NewMetaSealer(cfg.MetaKey())))
		case config.MetaEtcd:
			store, err = meta.NewEtcd(ctx, cfg.Meta.Endpoints, cfg.Meta.Prefix, cfg.Meta.Username, cfg.Meta.Password,
				meta.WithEtcdLogger(opts.Logger), meta.WithEtcdSealer(pipeline.NewMetaSealer(cfg.MetaKey())))
		default:
			err = fmt.Errorf("metadata store type %q is not available in this build", cfg.Meta.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("zstor: open metadata store: %w", err)
		}
	}
	po := cfg.PipelineOptions()
	po.Logger = opts.Logger
	enc, err := pipeline.NewEncoder(cfg.Encryption.Key, po)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("zstor: %w", err)
	}
	ph, err := newPathHasher(cfg.MetaKey())
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("zstor: %w", err)
	}
	c := &Client{
		cfg:   cfg,
		meta:  store,
		enc:   enc,
		paths: ph,
		log:   opts.Logger,
	}
	if opts.Backend.Logger == nil {
		opts.Backend.Logger = opts.Logger
	}
	c.backends = backend.New(cfg.Groups, opts.Backend)
	c.resolveAll(ctx)
	if cfg.Root != "" {
		root, err := filepath.Abs(cfg.Root)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("zstor: root %q: %w", cfg.Root, err)
		}
		c.root = root
	}
	return c, nil
}

// Close releases the backends and the metadata store.
func (c *Client) Close() error {
	c.backends.Close()
	return c.meta.Close()
}

// Config returns the client's configuration.
func (c *Client) Config() *config.Config { return c.cfg }

// Backends returns the data backends.
func (c *Client) Backends() *backend.Set { return c.backends }

// Meta returns the metadata store.
func (c *Client) Meta() meta.Store { return c.meta }

// KeyFor returns the object key of a local path: the path relative to root
// ("a/b.txt"), or the absolute path when no root is configured.
func (c *Client) KeyFor(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("zstor: %s: %w", path, err)
	}
	if c.root == "" {
		return filepath.ToSlash(abs), nil
	}
	rel, err := filepath.Rel(c.root, abs)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("zstor: %s: %w %s", path, ErrNotUnderRoot, c.root)
	}
	return filepath.ToSlash(rel), nil
}

// PathFor is the local path of an object key (the inverse of KeyFor).
func (c *Client) PathFor(key string) string {
	if c.root == "" {
		return filepath.FromSlash(key)
	}
	return filepath.Join(c.root, filepath.FromSlash(key))
}

// rules are the placement rules of the config.
func (c *Client) rules(k, n int) placement.Rules {
	return placement.Rules{K: k, N: n, RedundantGroups: c.cfg.RedundantGroups, RedundantNodes: c.cfg.RedundantNodes}
}

// getRecord reads and decodes the record of an object key. A missing
// record wraps ErrNotStored; when the store holds records this key cannot
// open, the error says the encryption key is probably wrong.
func (c *Client) getRecord(ctx context.Context, key string) (*Record, string, error) {
	mk := c.paths.metaKey(key)
	plain, err := c.meta.Get(ctx, mk)
	if errors.Is(err, meta.ErrNotFound) {
		if c.foreignRecords(ctx) {
			return nil, mk, fmt.Errorf("%w for %q (the metadata store holds records this config's key cannot decrypt: wrong encryption key?)", ErrNotStored, key)
		}
		return nil, mk, fmt.Errorf("%w for %q", ErrNotStored, key)
	}
	if errors.Is(err, meta.ErrUnauthentic) {
		return nil, mk, fmt.Errorf("metadata of %q: %w (wrong encryption key?)", key, err)
	}
	if err != nil {
		return nil, mk, fmt.Errorf("metadata of %q: %w", key, err)
	}
	rec, err := decodeRecord(plain)
	if err != nil {
		return nil, mk, fmt.Errorf("metadata of %q: %w", key, err)
	}
	c.keyOK.Store(true)
	return rec, mk, nil
}

// foreignSample bounds how many records foreignRecords reads.
const foreignSample = 100

// foreignRecords reports whether the store holds records, and every one of
// the first foreignSample fails authentication with our key (meta's
// ErrUnauthentic): then this config's key is almost certainly wrong. It
// stops at the first record that opens, so records that fail (junk written
// by a backend, or left by another key) never block stores of other
// objects while any good record is in the sample; the zdb store does not
// even report records that fail on a minority of the backends.
func (c *Client) foreignRecords(ctx context.Context) bool {
	if c.keyOK.Load() {
		return false
	}
	seen, bad := 0, 0
	for k, err := range c.meta.Keys(ctx, "") {
		if err != nil {
			return false
		}
		if seen >= foreignSample {
			break
		}
		seen++
		_, err := c.meta.Get(ctx, k)
		switch {
		case err == nil:
			c.keyOK.Store(true)
			return false
		case errors.Is(err, meta.ErrUnauthentic):
			bad++
		case !errors.Is(err, meta.ErrNotFound):
			return false // unknown: ask again next time
		}
	}
	if bad == 0 {
		c.keyOK.Store(true) // empty, or nothing but deleted keys
		return false
	}
	return true
}

// openRecord decodes a record as the metadata store returned it (the
// store has already authenticated and decrypted it).
func (c *Client) openRecord(_ string, plain []byte) (*Record, error) {
	return decodeRecord(plain)
}

func (c *Client) putRecord(ctx context.Context, mk string, rec *Record) error {
	plain, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	return c.meta.Put(ctx, mk, plain)
}
