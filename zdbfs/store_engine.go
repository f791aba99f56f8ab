package zdbfs

import (
	"context"
	"errors"

	"qss/zdb"
)

// EngineStore is a Store over a namespace of the in-process zdb engine: no
// socket in between. Batches use the engine's group commit (SetDeferred,
// then one Commit).
type EngineStore struct {
	ns *zdb.Namespace
}

// NewEngineStore wraps an engine namespace (user mode).
func NewEngineStore(ns *zdb.Namespace) *EngineStore { return &EngineStore{ns: ns} }

func mapEngineErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zdb.ErrNoSpace):
		return ErrNoSpace
	case errors.Is(err, zdb.ErrNotFound):
		return ErrNotFound
	}
	return &StoreError{Op: op, Err: err}
}

// Get implements Store.
func (s *EngineStore) Get(_ context.Context, key []byte) ([]byte, error) {
	v, err := s.ns.Get(key, nil)
	if err != nil {
		return nil, mapEngineErr("get", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// GetMany implements Store.
func (s *EngineStore) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := s.Get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Exists implements Store.
func (s *EngineStore) Exists(_ context.Context, key []byte) (bool, error) {
	_, err := s.ns.Stat(key)
	if errors.Is(err, zdb.ErrNotFound) {
		return false, nil
	}
	return err == nil, mapEngineErr("exists", err)
}

// Set implements Store.
func (s *EngineStore) Set(_ context.Context, key, value []byte) error {
	_, err := s.ns.Set(key, value, 0)
	return mapEngineErr("set", err)
}

// Del implements Store.
func (s *EngineStore) Del(_ context.Context, key []byte) error {
	err := s.ns.Del(key, 0)
	if errors.Is(err, zdb.ErrNotFound) {
		return nil
	}
	return mapEngineErr("del", err)
}

// Apply implements Store: every op is buffered, then committed once.
func (s *EngineStore) Apply(_ context.Context, ops []Op) error {
	var last zdb.Ticket
	have := false
	var first error
	for _, op := range ops {
		var t zdb.Ticket
		var err error
		if op.Del {
			t, err = s.ns.DelDeferred(op.Key, 0)
			if errors.Is(err, zdb.ErrNotFound) {
				continue
			}
		} else {
			var k []byte
			k, t, err = s.ns.SetDeferred(op.Key, op.Value, 0)
			if err == nil && k == nil {
				continue // unchanged payload: nothing written
			}
		}
		if err != nil {
			first = mapEngineErr("apply", err)
			break
		}
		last, have = t, true
	}
	if have {
		if err := s.ns.Commit(last); err != nil && first == nil {
			first = mapEngineErr("commit", err)
		}
	}
	return first
}

// Close implements Store. The engine belongs to the caller.
func (s *EngineStore) Close() error { return nil }
