package zdbfs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"qss/zdb/client"
)

// ClientStore is a Store over the RESP client: any 0-db compatible server.
type ClientStore struct {
	c     *client.Client
	pipes sync.Pool // *client.Pipeline: reused, so their buffers are not regrown per batch

	// Parallel is the number of pipelined batches of one Apply in flight
	// at once (default 1: in order). Only for a namespace whose Apply
	// calls never need an order among their writes — zdbfs's data
	// namespace, where a batch is blocks of distinct keys whose order
	// the crash story does not depend on (the records around them are
	// written before and after the whole Apply). Batches then travel on
	// separate connections, so transfer and appends overlap. After a
	// failure no further batch is sent; the error returned is the one of
	// the first failing batch in order, and the writes applied are then
	// some of those sent, not necessarily a prefix — which Apply's
	// contract allows past the failing write.
	Parallel int
}

// NewClientStore wraps an open client bound to one namespace.
func NewClientStore(c *client.Client) *ClientStore {
	s := &ClientStore{c: c}
	s.pipes.New = func() any { return c.Pipeline() }
	return s
}

// mapClientErr turns client errors into the Store sentinels.
func mapClientErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, client.ErrNoSpace):
		return ErrNoSpace
	case errors.Is(err, client.ErrKeyNotFound), errors.Is(err, client.ErrNotFound):
		return ErrNotFound
	}
	return &StoreError{Op: op, Err: err}
}

// Get implements Store.
func (s *ClientStore) Get(ctx context.Context, key []byte) ([]byte, error) {
	v, err := s.c.Get(ctx, key)
	if err != nil {
		return nil, mapClientErr("get", err)
	}
	return v, nil
}

// GetMany implements Store.
func (s *ClientStore) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	out := make([][]byte, 0, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), 256)
		vs, err := s.c.GetMany(ctx, keys[:n])
		if err != nil {
			return nil, mapClientErr("getmany", err)
		}
		out = append(out, vs...)
		keys = keys[n:]
	}
	return out, nil
}

// Exists implements Store.
func (s *ClientStore) Exists(ctx context.Context, key []byte) (bool, error) {
	ok, err := s.c.Exists(ctx, key)
	return ok, mapClientErr("exists", err)
}

// Set implements Store.
func (s *ClientStore) Set(ctx context.Context, key, value []byte) error {
	_, _, err := s.c.Set(ctx, key, value)
	return mapClientErr("set", err)
}

// Del implements Store.
func (s *ClientStore) Del(ctx context.Context, key []byte) error {
	err := mapClientErr("del", s.c.Del(ctx, key))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Apply implements Store with pipelines of bounded size: in order, or
// Parallel at a time.
func (s *ClientStore) Apply(ctx context.Context, ops []Op) error {
	var batches [][]Op
	for len(ops) > 0 {
		n, bytes := 0, 0
		for n < len(ops) && n < 128 && bytes < 4<<20 {
			bytes += len(ops[n].Value) + len(ops[n].Key)
			n++
		}
		batches = append(batches, ops[:n])
		ops = ops[n:]
	}
	if s.Parallel <= 1 || len(batches) == 1 {
		for _, b := range batches {
			if err := s.applyBatch(ctx, b); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, len(batches))
	sem := make(chan struct{}, s.Parallel)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for i, b := range batches {
		sem <- struct{}{}
		if failed.Load() {
			<-sem
			errs[i] = errors.New("not sent: an earlier batch failed")
			continue // a full or broken namespace: send no more
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if errs[i] = s.applyBatch(ctx, b); errs[i] != nil {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err // the first batch's failure
		}
	}
	return nil
}

// applyBatch runs ops as one pipeline.
func (s *ClientStore) applyBatch(ctx context.Context, ops []Op) error {
	p := s.pipes.Get().(*client.Pipeline)
	for _, op := range ops {
		if op.Del {
			p.Do([]byte("DEL"), op.Key)
		} else {
			p.DoRef([]byte("SET"), op.Key, op.Value) // blocks and log values are not changed meanwhile
		}
	}
	replies, err := p.Exec(ctx) // empties p for the next batch
	s.pipes.Put(p)
	if err != nil {
		return mapClientErr("apply", err)
	}
	for i, r := range replies {
		err := mapClientErr("apply", client.AsError(r))
		if ops[i].Del && errors.Is(err, ErrNotFound) {
			err = nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Close implements Store.
func (s *ClientStore) Close() error { return s.c.Close() }
