package zdbfs

import (
	"context"
	"sync"
	"time"
)

// wbStore is the metadata namespace seen through a write-behind log.
// Metadata writes (namespace operations, inode records, xattrs, the
// allocator and orphan records) are appended, in order, to an in-memory
// log and answered at once; reads see the pending writes first. The log
// is written to zdb, in the same order and pipelined, by Flush:
//
//   - when a file is fsync'ed or fdatasync'ed (or closed, with
//     SyncClose), when the root directory is fsync'ed, and on unmount —
//     so each of these returns only once every metadata change made
//     before it is in zdb; and after the last close of a written file;
//   - before file blocks are written above a file's high-water mark, and
//     before blocks are deleted (the records they depend on must be in
//     zdb first: see the crash story in docs/zdbfs-format.md);
//   - in the background when its oldest write is older than the flush age;
//   - before an append would take it over its bound (so its memory is
//     bounded, and a failing zdb makes operations fail, not pile up).
//
// Because the log is applied in order, zdb holds a prefix of the
// operations after any crash, which keeps the write-through invariants of
// the format (no listed name without its inode record).
//
// One exception keeps the log small: a directory listing page rewritten
// while an earlier version of it still waits in the log replaces that
// version — the write moves to the later position. Pages are leaves
// (nothing written after a page depends on it, except deletes), so moving
// a page write later only delays names appearing in a listing: a crash
// can show an entry not listed yet, which the crash story already allows,
// never a listed name without its entry and inode. A delete is a barrier:
// a page never moves past a delete logged after it (an unlisting must
// reach zdb before the entry or inode it unlists goes). Without this,
// each new file in a directory added a copy of its page (up to 16 KiB)
// to the log.
type wbStore struct {
	raw Store

	mu      sync.Mutex
	ops     []*logOp
	over    map[string]*logOp // latest pending write of each key
	bytes   int
	oldest  time.Time
	barrier int // ops before this index never move (a delete follows them)

	fmu sync.Mutex // one flush at a time, in order

	flushes uint64 // successful flushes (statistics)
}

const (
	wbMaxOps   = 16384
	wbMaxBytes = 8 << 20
)

// logOp is a write in the log; dead once a later version replaced it.
type logOp struct {
	Op
	idx  int // index in wbStore.ops while pending
	dead bool
}

func opBytes(op *Op) int { return len(op.Key) + len(op.Value) + 16 }

// movable reports whether a write of key may be replaced by a later one
// in the log: directory listing pages only ('p', 8-byte ino, 4-byte page).
func movable(key []byte) bool { return len(key) == 13 && key[0] == 'p' }

func newWBStore(raw Store) *wbStore { return &wbStore{raw: raw, over: map[string]*logOp{}} }

// lookup returns the pending write of key, if any: its value (read under
// the lock: a replaced page's value is dropped) and whether it deletes.
func (s *wbStore) lookup(key []byte) (value []byte, del, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	op, ok := s.over[string(key)]
	if !ok {
		return nil, false, false
	}
	return op.Value, op.Del, true
}

// logged reports whether key has a write not yet known to be in zdb
// (pending, or in a flush still running).
func (s *wbStore) logged(key []byte) bool {
	_, _, ok := s.lookup(key)
	return ok
}

// Get implements Store.
func (s *wbStore) Get(ctx context.Context, key []byte) ([]byte, error) {
	if v, del, ok := s.lookup(key); ok {
		if del {
			return nil, ErrNotFound
		}
		return v, nil
	}
	return s.raw.Get(ctx, key)
}

// GetMany implements Store.
func (s *wbStore) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	var miss [][]byte
	var idx []int
	s.mu.Lock()
	for i, k := range keys {
		if op, ok := s.over[string(k)]; ok {
			if !op.Del {
				out[i] = op.Value
			}
			continue
		}
		miss = append(miss, k)
		idx = append(idx, i)
	}
	s.mu.Unlock()
	if len(miss) > 0 {
		vs, err := s.raw.GetMany(ctx, miss)
		if err != nil {
			return nil, err
		}
		for j, v := range vs {
			out[idx[j]] = v
		}
	}
	return out, nil
}

// Exists implements Store.
func (s *wbStore) Exists(ctx context.Context, key []byte) (bool, error) {
	if _, del, ok := s.lookup(key); ok {
		return !del, nil
	}
	return s.raw.Exists(ctx, key)
}

// Set implements Store: the write is logged.
func (s *wbStore) Set(ctx context.Context, key, value []byte) error {
	return s.Apply(ctx, []Op{{Key: key, Value: value}})
}

// Del implements Store: the delete is logged.
func (s *wbStore) Del(ctx context.Context, key []byte) error {
	return s.Apply(ctx, []Op{{Key: key, Del: true}})
}

// Apply implements Store: the ops are logged, all or none. When the log
// is full it is flushed first; if that fails, the error is returned and
// nothing is logged.
func (s *wbStore) Apply(ctx context.Context, ops []Op) error {
	n := 0
	for i := range ops {
		n += opBytes(&ops[i])
	}
	for {
		s.mu.Lock()
		if len(s.ops) == 0 || (len(s.ops)+len(ops) <= wbMaxOps && s.bytes+n <= wbMaxBytes) {
			break
		}
		s.mu.Unlock()
		if err := s.Flush(ctx); err != nil {
			return err
		}
	}
	defer s.mu.Unlock()
	if len(s.ops) == 0 {
		s.oldest = time.Now()
	}
	for i := range ops {
		op := &logOp{Op: ops[i], idx: len(s.ops)}
		k := string(op.Key)
		if old, ok := s.over[k]; ok && movable(op.Key) && old.idx >= s.barrier &&
			old.idx < len(s.ops) && s.ops[old.idx] == old && !old.dead {
			n -= opBytes(&old.Op)
			old.dead, old.Value = true, nil // replaced: this later write carries the page
		}
		s.ops = append(s.ops, op)
		s.over[k] = op
		if op.Del {
			s.barrier = len(s.ops)
		}
	}
	s.bytes += n
	return nil
}

// pending reports the number of logged writes and the age of the oldest.
func (s *wbStore) pending() (int, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ops) == 0 {
		return 0, 0
	}
	return len(s.ops), time.Since(s.oldest)
}

// Flush writes the log to zdb, in order. On failure the writes stay
// logged (ahead of any logged meanwhile) and are tried again by the next
// flush; re-applying ones that did reach zdb is harmless.
func (s *wbStore) Flush(ctx context.Context) error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.mu.Lock()
	batch := s.ops
	bytes := s.bytes
	s.ops, s.bytes, s.barrier = nil, 0, 0
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	flat := make([]Op, 0, len(batch))
	for _, op := range batch {
		if !op.dead {
			flat = append(flat, op.Op)
		}
	}
	err := s.raw.Apply(ctx, flat)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Back in front of what was logged meanwhile, which stays where
		// it is: nothing logged meanwhile may replace a write in batch.
		// A delete logged meanwhile keeps its barrier (shifted past batch).
		s.barrier = len(batch) + s.barrier
		s.ops = append(batch, s.ops...)
		for i, op := range s.ops {
			op.idx = i
		}
		s.bytes += bytes
		s.oldest = time.Now().Add(-time.Hour) // overdue: retried at the next tick
		return err
	}
	for _, op := range batch {
		if s.over[string(op.Key)] == op {
			delete(s.over, string(op.Key))
		}
	}
	if len(s.ops) > 0 {
		s.oldest = time.Now()
	}
	s.flushes++
	return nil
}

// Close implements Store; it does not flush (FS.Close does).
func (s *wbStore) Close() error { return nil }

var _ Store = (*wbStore)(nil)
