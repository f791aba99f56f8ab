// Package meta stores zstor's metadata records: small values under opaque
// keys, kept where losing some nodes loses nothing, on backends that are
// trusted with neither confidentiality nor integrity. A Store seals
// (encrypts and authenticates) every record with the caller's Sealer,
// binding the record's version, its kind (record or tombstone) and its key
// into the seal, so no backend can forge, roll back or move a record; the
// caller derives keys that reveal nothing (e.g. a keyed hash of the path).
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

// ErrUnauthentic is returned by Get when the record under a key fails
// authentication (a wrong key, or records forged or damaged on more than
// half of the backends that answered).
var ErrUnauthentic = errors.New("meta: record fails authentication (wrong metadata key, or forged)")

// ErrUnavailable means too few backends answered to reach a quorum.
var ErrUnavailable = errors.New("meta: not enough metadata backends reachable")

// Sealer seals and opens records: pipeline.MetaSealer. Seal must bind ad
// (associated data) to the sealed bytes so that Open with any other ad
// fails, and add exactly Overhead bytes.
type Sealer interface {
	Seal(plain, ad []byte) ([]byte, error)
	Open(sealed, ad []byte) ([]byte, error)
	Overhead() int
}

// Store is a metadata store. Keys are at most 200 bytes; values at most
// 4 MiB. Implementations are safe for concurrent use.
type Store interface {
	// Put stores value under key, replacing any previous value. When Put
	// returns nil the record survives the loss of any minority of backends.
	Put(ctx context.Context, key string, value []byte) error
	// Get returns the latest value stored under key, or ErrNotFound, or
	// ErrUnauthentic when what is stored there fails authentication.
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
