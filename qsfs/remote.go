package qsfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"qss/zstor"
	"qss/zstor/pipeline"
)

// Remote is where qsfs keeps its objects: zstor in production. Names are
// qsfs's object names ("zdbfs-data/d3", "manifest"); an implementation
// maps them to its own keys. Every method is safe for concurrent use.
type Remote interface {
	// Put stores the local file at path as object name, replacing an
	// older version, and returns what was stored. The file must not
	// change meanwhile (qsfs only puts immutable files).
	Put(ctx context.Context, name, path string) (Stored, error)
	// Get writes object name to path, complete when it returns (written
	// aside and renamed).
	Get(ctx context.Context, name, path string) error
	// ReadAt fills p with the bytes of object name at offset off. An
	// error that errors.Is errors.ErrUnsupported means only whole objects
	// can be read (Get).
	ReadAt(ctx context.Context, name string, p []byte, off int64) error
	// Delete removes object name; an absent object is not an error.
	Delete(ctx context.Context, name string) error
}

// Stored describes an object as stored.
type Stored struct {
	Size      int64
	Checksum  pipeline.Checksum
	MinShards int // fewest shards of any chunk (below n: stored degraded)
}

// ObjectPrefix is prepended to qsfs's object names to form zstor keys, so
// that a zstor shared with other data keeps them apart.
const ObjectPrefix = "qsfs/"

// ZstorRemote is the Remote of a zstor client.
type ZstorRemote struct {
	C *zstor.Client
}

// Put implements Remote.
func (r ZstorRemote) Put(ctx context.Context, name, path string) (Stored, error) {
	res, err := r.C.Store(ctx, path, zstor.StoreOptions{Key: ObjectPrefix + name})
	if err != nil {
		return Stored{}, err
	}
	return Stored{Size: res.Size, Checksum: res.Checksum, MinShards: res.MinShards}, nil
}

// Get implements Remote.
func (r ZstorRemote) Get(ctx context.Context, name, path string) error {
	_, err := r.C.Retrieve(ctx, path, zstor.RetrieveOptions{Key: ObjectPrefix + name})
	if errors.Is(err, zstor.ErrNotStored) {
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return err
}

// ReadAt implements Remote.
func (r ZstorRemote) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	return fmt.Errorf("qsfs: range reads: %w", errors.ErrUnsupported)
}

// Delete implements Remote.
func (r ZstorRemote) Delete(ctx context.Context, name string) error {
	_, err := r.C.Delete(ctx, ObjectPrefix+name)
	if errors.Is(err, zstor.ErrNotStored) {
		return nil
	}
	return err
}

// BackendHealth is one backend as a Remote that has backends sees it.
type BackendHealth struct {
	Address   string `json:"address"`
	Namespace string `json:"namespace"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// HealthReporter is a Remote that can report its backends (status).
type HealthReporter interface {
	Health(ctx context.Context) (backends []BackendHealth, expected int)
}

// Health implements HealthReporter: every data backend, probed.
func (r ZstorRemote) Health(ctx context.Context) ([]BackendHealth, int) {
	var out []BackendHealth
	for _, h := range r.C.Backends().ProbeAll(ctx) {
		bh := BackendHealth{Address: h.Backend.Config.Address, Namespace: h.Backend.Config.Namespace, Reachable: h.Usable()}
		if h.Err != nil {
			bh.Error = h.Err.Error()
		}
		out = append(out, bh)
	}
	return out, r.C.Config().ExpectedShards
}
