// Package meta stores zstor's metadata records: small opaque values under
// opaque keys, kept where losing some nodes loses nothing. The caller seals
// (encrypts and authenticates) every record and derives keys that reveal
// nothing (e.g. a keyed hash of the path), so a Store never sees plaintext.
//
// Two implementations: a set of zdb backends with quorum reads and writes
// (the default, no extra service), and an etcd cluster.
package meta

import (
	"context"
	"errors"
	"iter"
)

// ErrNotFound is returned by Get for a key that has no record.
var ErrNotFound = errors.New("meta: no record for this key")

// ErrUnavailable means too few backends answered to reach a quorum.
var ErrUnavailable = errors.New("meta: not enough metadata backends reachable")

// Store is a metadata store. Keys are at most 200 bytes; values at most
// 4 MiB. Implementations are safe for concurrent use.
type Store interface {
	// Put stores value under key, replacing any previous value. When Put
	// returns nil the record survives the loss of any minority of backends.
	Put(ctx context.Context, key string, value []byte) error
	// Get returns the latest value stored under key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Keys yields every key that starts with prefix, each once, in no
	// particular order; the error, if any, comes last with an empty key.
	Keys(ctx context.Context, prefix string) iter.Seq2[string, error]
	// Health reports each backend's reachability, for status and metrics.
	Health(ctx context.Context) []BackendHealth
	Close() error
}

// BackendHealth is one metadata backend's state.
type BackendHealth struct {
	Address   string
	Reachable bool
	Err       string // why not, when not reachable
}
