package qsfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"sync"

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

// ZstorRemote is the Remote of a zstor client. Range reads go through a
// few open object readers (zstor.ObjectReader: the record read once, the
// last chunks decoded kept, the next chunk read ahead on sequential
// reads), least recently used closed first.
type ZstorRemote struct {
	C *zstor.Client

	mu      sync.Mutex
	readers map[string]*openReader
	clock   uint64
}

type openReader struct {
	r    *zstor.ObjectReader
	used uint64
}

// Open readers kept, the decoded chunks each keeps and the chunks its
// read-ahead keeps in flight on sequential reads: with 4 MiB chunks, at
// most readersKept × (readerChunks + readerAhead) × 4 MiB = 64 MiB.
const (
	readersKept  = 2
	readerChunks = 4
	readerAhead  = 3
)

// NewZstorRemote returns the Remote of c.
func NewZstorRemote(c *zstor.Client) *ZstorRemote {
	return &ZstorRemote{C: c, readers: map[string]*openReader{}}
}

// Put implements Remote.
func (r *ZstorRemote) Put(ctx context.Context, name, path string) (Stored, error) {
	res, err := r.C.Store(ctx, path, zstor.StoreOptions{Key: ObjectPrefix + name})
	if err != nil {
		return Stored{}, err
	}
	return Stored{Size: res.Size, Checksum: res.Checksum, MinShards: res.MinShards}, nil
}

// Get implements Remote.
func (r *ZstorRemote) Get(ctx context.Context, name, path string) error {
	_, err := r.C.Retrieve(ctx, path, zstor.RetrieveOptions{Key: ObjectPrefix + name})
	if errors.Is(err, zstor.ErrNotStored) {
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return err
}

// ReadAt implements Remote.
func (r *ZstorRemote) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	for attempt := 0; ; attempt++ {
		or, err := r.reader(ctx, name)
		if err != nil {
			return err
		}
		n, err := or.ReadAtContext(ctx, p, off)
		if err == nil || (errors.Is(err, io.EOF) && n == len(p)) {
			return nil
		}
		if errors.Is(err, fs.ErrClosed) && attempt < 8 && ctx.Err() == nil {
			// Another read pushed this reader out of the few kept open
			// (and closed it) while this one used it: not a failure.
			r.drop(name, or)
			continue
		}
		if attempt == 0 && ctx.Err() == nil && !errors.Is(err, io.EOF) {
			// The open reader's record may be stale (the object was
			// replaced, or repaired onto other backends): read again
			// with a fresh one.
			r.drop(name, or)
			continue
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("qsfs: %s: %d bytes at %d: beyond the object's %d bytes: %w", name, len(p), off, or.Size(), io.ErrUnexpectedEOF)
		}
		return err
	}
}

// reader returns the open reader of object name, opening it if needed.
func (r *ZstorRemote) reader(ctx context.Context, name string) (*zstor.ObjectReader, error) {
	r.mu.Lock()
	r.clock++
	if o := r.readers[name]; o != nil {
		o.used = r.clock
		r.mu.Unlock()
		return o.r, nil
	}
	r.mu.Unlock()
	or, err := r.C.OpenObject(ctx, ObjectPrefix+name, zstor.ReaderOptions{CacheChunks: readerChunks, ReadAheadChunks: readerAhead})
	if errors.Is(err, zstor.ErrNotStored) {
		return nil, fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.readers[name]; o != nil {
		or.Close()
		return o.r, nil
	}
	if r.readers == nil {
		r.readers = map[string]*openReader{}
	}
	r.readers[name] = &openReader{r: or, used: r.clock}
	for len(r.readers) > readersKept {
		var oldest string
		for k, o := range r.readers {
			if oldest == "" || o.used < r.readers[oldest].used {
				oldest = k
			}
		}
		r.readers[oldest].r.Close()
		delete(r.readers, oldest)
	}
	return or, nil
}

func (r *ZstorRemote) drop(name string, or *zstor.ObjectReader) {
	r.mu.Lock()
	if o := r.readers[name]; o != nil && o.r == or {
		delete(r.readers, name)
		or.Close()
	}
	r.mu.Unlock()
}

// Close closes the open readers.
func (r *ZstorRemote) Close() {
	r.mu.Lock()
	for k, o := range r.readers {
		o.r.Close()
		delete(r.readers, k)
	}
	r.mu.Unlock()
}

// Delete implements Remote.
func (r *ZstorRemote) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	if o := r.readers[name]; o != nil {
		o.r.Close()
		delete(r.readers, name)
	}
	r.mu.Unlock()
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
	// LatencyMS is the round trip of the health probe in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
	// UsedBytes is the namespace's data size; FreeBytes what can still be
	// written (-1 when unknown).
	UsedBytes int64 `json:"used_bytes"`
	FreeBytes int64 `json:"free_bytes"`
}

// HealthReporter is a Remote that can report its backends (status).
type HealthReporter interface {
	Health(ctx context.Context) (backends []BackendHealth, expected int)
}

// Health implements HealthReporter: every data backend, probed.
func (r *ZstorRemote) Health(ctx context.Context) ([]BackendHealth, int) {
	var out []BackendHealth
	for _, h := range r.C.Backends().ProbeAll(ctx) {
		bh := BackendHealth{Address: h.Backend.Config.Address, Namespace: h.Backend.Config.Namespace, Reachable: h.Usable(),
			LatencyMS: float64(h.Latency.Microseconds()) / 1000, UsedBytes: h.Used, FreeBytes: h.Free()}
		if h.Err != nil {
			bh.Error = h.Err.Error()
		}
		out = append(out, bh)
	}
	return out, r.C.Config().ExpectedShards
}

// Maintainer is a Remote that keeps redundancy up: qsfs runs its repair
// periodically and shows its census in the status.
type Maintainer interface {
	// Repair re-creates the missing shards of qsfs's objects (on
	// reachable backends) and returns how many objects it repaired.
	Repair(ctx context.Context) (repaired int, err error)
	// Redundancy is the fewest shards any of qsfs's objects has on
	// reachable backends, and the configured n.
	Redundancy(ctx context.Context) (lowest, expected int, err error)
	// Census counts qsfs's objects by their redundancy.
	Census(ctx context.Context) (Redundancy, error)
}

// Redundancy is a census of qsfs's stored objects by how many shards each
// has on reachable backends (its chunk with the fewest).
type Redundancy struct {
	// Lowest is the fewest shards any object has; Expected the configured
	// n and Needed the k a read needs (the largest k of the objects).
	Lowest, Expected, Needed int
	// ByShards counts objects by their fewest shards ("6": 120 objects).
	ByShards map[string]int
	// Objects is how many objects were counted.
	Objects int
}

// LossesSurvivable is how many more backends can be lost with every
// object still readable (Lowest − Needed), or -1 when unknown.
func (r Redundancy) LossesSurvivable() int {
	if r.Objects == 0 || r.Needed == 0 {
		return -1
	}
	return max(r.Lowest-r.Needed, 0)
}

// Repair implements Maintainer.
func (r *ZstorRemote) Repair(ctx context.Context) (int, error) {
	rep, err := r.C.Repair(ctx, ObjectPrefix)
	if err != nil {
		return 0, err
	}
	n := 0
	if rep != nil {
		n = len(rep.Repaired)
		if len(rep.Errors) > 0 {
			return n, fmt.Errorf("%d objects could not be repaired: %s", len(rep.Errors), rep.Errors[0])
		}
	}
	return n, nil
}

// Census implements Maintainer.
func (r *ZstorRemote) Census(ctx context.Context) (Redundancy, error) {
	cs, err := r.C.Census(ctx)
	if err != nil {
		return Redundancy{}, err
	}
	out := Redundancy{Expected: r.C.Config().ExpectedShards, Needed: r.C.Config().MinimalShards, ByShards: map[string]int{}}
	for _, e := range cs.Entries {
		if !strings.HasPrefix(e.Key, ObjectPrefix) {
			continue
		}
		if out.Objects == 0 || e.MinShards < out.Lowest {
			out.Lowest = e.MinShards
		}
		out.Needed = max(out.Needed, e.K)
		out.Objects++
		out.ByShards[strconv.Itoa(e.MinShards)]++
	}
	return out, nil
}

// Redundancy implements Maintainer.
func (r *ZstorRemote) Redundancy(ctx context.Context) (int, int, error) {
	cs, err := r.C.Census(ctx)
	if err != nil {
		return 0, 0, err
	}
	low := -1
	for _, e := range cs.Entries {
		if len(e.Key) >= len(ObjectPrefix) && e.Key[:len(ObjectPrefix)] == ObjectPrefix && (low < 0 || e.MinShards < low) {
			low = e.MinShards
		}
	}
	if low < 0 {
		low = 0
	}
	return low, r.C.Config().ExpectedShards, nil
}
