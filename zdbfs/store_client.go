package zdbfs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"qss/zdb/client"
)

// ClientStore is a Store over the RESP client: any 0-db compatible server.
//
// Against our zdb, batches of requests are pipelined: written at once, the
// replies read as they come. The C 0-db (v2.0.x) does not survive that: it
// reads a connection edge-triggered, once per wake-up, into an 8 KiB
// buffer, and when that buffer ends exactly at a request boundary while
// more pipelined requests wait in the socket it goes back to sleep without
// reading them. No new data comes (the client waits for replies), so the
// connection stalls until the client's I/O timeout, and a flush fails with
// EIO. Probe tells the servers apart; against any server that is not known
// to pipeline safely, each connection carries one request at a time (a
// request is read whole before the reply goes out, so nothing is ever
// pending behind a boundary), and Parallel connections keep several in
// flight instead.
type ClientStore struct {
	c      *client.Client
	pipes  sync.Pool // *client.Pipeline: reused, so their buffers are not regrown per batch
	serial bool      // one request in flight per connection (see Probe)

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

// NewClientStore wraps an open client bound to one namespace. It
// pipelines until Probe says the server cannot take it.
func NewClientStore(c *client.Client) *ClientStore {
	s := &ClientStore{c: c}
	s.pipes.New = func() any { return c.Pipeline() }
	return s
}

// serialWidth is how many single requests GetMany keeps in flight (on as
// many connections) when the server does not take pipelines.
const serialWidth = 8

// PipelineSafe reports whether the server that answered INFO with info
// reads pipelined requests reliably: only our zdb, whose revision ends in
// "-go" (zdb/server.Version). The C 0-db answers with its git revision,
// and an unknown server is treated like it: slower, never stalled.
func PipelineSafe(info map[string]string) bool {
	return strings.HasSuffix(info["server_revision"], "-go")
}

// Probe asks the server for INFO and chooses the write pattern: pipelines
// for our zdb, one request per connection at a time for the C 0-db and
// any other server (see ClientStore).
func (s *ClientStore) Probe(ctx context.Context) error {
	info, err := s.c.Info(ctx)
	if err != nil {
		return fmt.Errorf("identify the server (INFO): %w", err)
	}
	s.serial = !PipelineSafe(info)
	return nil
}

// Pipelining reports whether requests are pipelined (see Probe).
func (s *ClientStore) Pipelining() bool { return !s.serial }

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
	if s.serial {
		return s.getSerial(ctx, keys)
	}
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

// getSerial is GetMany without pipelines: single GETs, serialWidth at
// a time.
func (s *ClientStore) getSerial(ctx context.Context, keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	errs := make([]error, len(keys))
	sem := make(chan struct{}, serialWidth)
	var wg sync.WaitGroup
	for i, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			v, err := s.c.Get(ctx, k)
			if err != nil && !errors.Is(err, client.ErrNotFound) {
				errs[i] = err
				return
			}
			out[i] = v
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, mapClientErr("getmany", err)
		}
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
	maxOps := 128
	if s.serial && s.Parallel > 1 {
		maxOps = 1 // single requests, Parallel connections at a time
	}
	var batches [][]Op
	for len(ops) > 0 {
		n, bytes := 0, 0
		for n < len(ops) && n < maxOps && bytes < 4<<20 {
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

// applyBatch runs ops as one pipeline, or one after another on one
// connection when the server does not take pipelines.
func (s *ClientStore) applyBatch(ctx context.Context, ops []Op) error {
	if s.serial {
		for _, op := range ops {
			var err error
			if op.Del {
				err = s.Del(ctx, op.Key)
			} else {
				err = s.Set(ctx, op.Key, op.Value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
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
