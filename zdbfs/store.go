package zdbfs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// Store is the key-value interface zdbfs keeps its records in: one Store per
// zdb namespace (metadata and data). Both implementations (over the RESP
// client, over the in-process engine) must pass the same tests.
//
// A write is durable, to the level the zdb server is configured for, when
// the call returns. Errors are reported with the sentinels below so that the
// filesystem can map them to errno values: ErrNotFound (a missing key, never
// a transport failure), ErrNoSpace (namespace full: ENOSPC), anything else
// (server down, I/O error: EIO).
type Store interface {
	// Get returns the value of key, or ErrNotFound. The value belongs to
	// the caller, who may keep and change it (zdbfs caches full blocks
	// of the data namespace as they come). The write-behind log over the
	// metadata namespace is the exception: what it returns is shared
	// with the log and must not be changed.
	Get(ctx context.Context, key []byte) ([]byte, error)
	// GetMany returns the values of keys, nil for a missing key, kept
	// as Get's.
	GetMany(ctx context.Context, keys [][]byte) ([][]byte, error)
	// Exists reports whether key holds a value.
	Exists(ctx context.Context, key []byte) (bool, error)
	// Set stores value under key.
	Set(ctx context.Context, key, value []byte) error
	// Del deletes key; a missing key is not an error.
	Del(ctx context.Context, key []byte) error
	// Apply runs ops in order and returns the first error. Ops before the
	// failing one are applied; ops after it may or may not be. The ops
	// that succeeded are durable when Apply returns.
	Apply(ctx context.Context, ops []Op) error
	// Close releases the store's resources.
	Close() error
}

// Op is one write of a batch: a Set, or a Del when Del is true.
type Op struct {
	Key   []byte
	Value []byte
	Del   bool
}

// Store errors.
var (
	ErrNotFound = errors.New("key not found")
	ErrNoSpace  = errors.New("no space left on namespace")
)

// StoreError wraps a backend failure that is neither ErrNotFound nor
// ErrNoSpace: the filesystem reports it as EIO.
type StoreError struct {
	Op  string
	Err error
}

func (e *StoreError) Error() string { return fmt.Sprintf("zdbfs store %s: %v", e.Op, e.Err) }
func (e *StoreError) Unwrap() error { return e.Err }

// toErrno maps an error to the errno the kernel sees: ENOSPC for a full
// namespace, ENOENT for a missing record, EIO for everything else (a
// backend that is down is never reported as a missing file).
func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, ErrNotFound):
		return syscall.ENOENT
	}
	var se *StoreError
	if errors.As(err, &se) {
		return syscall.EIO // a transport errno (ECONNREFUSED…) is still EIO
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}
