package backend

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"qss/zdb/client"
)

// StoredShard is one value of a backend's namespace, as SCAN lists it.
type StoredShard struct {
	Seq  uint64
	Size int64
	Time time.Time // the backend's clock at the write, second precision
}

// Scan lists every value of the backend's namespace in write order (for
// garbage collection). Keys that are not sequential ids are skipped. An
// error ends the iteration after being yielded.
func (b *Backend) Scan(ctx context.Context) iter.Seq2[StoredShard, error] {
	return func(yield func(StoredShard, error) bool) {
		cl, err := b.client(ctx)
		if err != nil {
			yield(StoredShard{}, err)
			return
		}
		for e, err := range cl.ScanAll(ctx) {
			if err != nil {
				b.report(ctx, err)
				yield(StoredShard{}, fmt.Errorf("backend %s: scan: %w", b, err))
				return
			}
			seq, err := client.DecodeID(e.Key)
			if err != nil {
				continue
			}
			if !yield(StoredShard{Seq: seq, Size: e.Size, Time: e.Timestamp}, nil) {
				return
			}
		}
	}
}

// Now returns the backend's clock, against which the times of Scan and
// ShardTime compare.
func (b *Backend) Now(ctx context.Context) (time.Time, error) {
	cl, err := b.client(ctx)
	if err != nil {
		return time.Time{}, err
	}
	t, err := cl.Time(ctx)
	if err != nil {
		b.report(ctx, err)
		return time.Time{}, fmt.Errorf("backend %s: time: %w", b, err)
	}
	return t, nil
}

// ShardTime returns the time the shard under id was written (ErrNotFound
// when there is none).
func (b *Backend) ShardTime(ctx context.Context, id uint64) (time.Time, error) {
	cl, err := b.client(ctx)
	if err != nil {
		return time.Time{}, err
	}
	t, err := cl.KeyTime(ctx, client.EncodeID(id))
	if err != nil {
		if errors.Is(err, client.ErrNotFound) {
			return time.Time{}, fmt.Errorf("backend %s: shard %d: %w", b, id, ErrNotFound)
		}
		b.report(ctx, err)
		return time.Time{}, fmt.Errorf("backend %s: shard %d time: %w", b, id, err)
	}
	return t, nil
}
