package zdbfs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// applyLog is a Store that records what reaches it through Apply, and
// can be made to fail.
type applyLog struct {
	Store
	applied []string // "set key=value" / "del key"
	fail    error
}

func (s *applyLog) Apply(ctx context.Context, ops []Op) error {
	if s.fail != nil {
		return s.fail
	}
	for _, op := range ops {
		if op.Del {
			s.applied = append(s.applied, "del "+string(op.Key))
		} else {
			s.applied = append(s.applied, fmt.Sprintf("set %s=%s", op.Key, op.Value))
		}
	}
	return nil
}

// TestWriteBehindLogOrder: the log reaches the store in order, except
// that a listing page rewritten while an earlier version waits replaces
// it (the write moves later), never across a delete, never into a batch
// being flushed; other keys keep every version in place. Reads see the
// latest version.
func TestWriteBehindLogOrder(t *testing.T) {
	ctx := context.Background()
	page := func(n uint32) string { return string(pageKey(7, n)) }
	set := func(k, v string) Op { return Op{Key: []byte(k), Value: []byte(v)} }
	del := func(k string) Op { return Op{Key: []byte(k), Del: true} }

	raw := &applyLog{}
	s := newWBStore(raw)
	steps := []Op{
		set("i1", "a"), set(page(0), "p1"), set("i0", "d1"),
		set("i2", "b"), set(page(0), "p2"), set("i0", "d2"), // p1 replaced by p2
		set("i1", "a2"), // inode records are never merged
		del("e9"),       // barrier
		set(page(0), "p3"), set(page(1), "q1"), set(page(1), "q2"),
	}
	for _, op := range steps {
		if err := s.Apply(ctx, []Op{op}); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Get(ctx, []byte(page(0))); err != nil || string(v) != "p3" {
		t.Fatalf("read of a logged page: %q %v", v, err)
	}
	must(t, s.Flush(ctx))
	want := []string{
		"set i1=a", "set i0=d1", "set i2=b", "set " + page(0) + "=p2", "set i0=d2", "set i1=a2",
		"del e9", "set " + page(0) + "=p3", "set " + page(1) + "=q2",
	}
	if !slices.Equal(raw.applied, want) {
		t.Fatalf("applied\n %q\nwant\n %q", raw.applied, want)
	}

	// A failed flush keeps its writes in front and in order; a page
	// logged meanwhile does not replace one in the failed batch.
	raw.applied, raw.fail = nil, errors.New("zdb down")
	must(t, s.Apply(ctx, []Op{set(page(0), "r1"), set("i5", "x")}))
	if err := s.Flush(ctx); err == nil {
		t.Fatal("flush did not fail")
	}
	must(t, s.Apply(ctx, []Op{set(page(0), "r2"), set(page(0), "r3")}))
	raw.fail = nil
	must(t, s.Flush(ctx))
	want = []string{"set " + page(0) + "=r1", "set i5=x", "set " + page(0) + "=r3"}
	if !slices.Equal(raw.applied, want) {
		t.Fatalf("after a failed flush, applied\n %q\nwant\n %q", raw.applied, want)
	}
	if n, _ := s.pending(); n != 0 {
		t.Fatalf("%d writes still pending", n)
	}
}

// blockingLog is an applyLog whose next Apply waits for release and then
// fails: writes logged meanwhile meet a flush in flight.
type blockingLog struct {
	applyLog
	entered, release chan struct{}
}

func (s *blockingLog) Apply(ctx context.Context, ops []Op) error {
	if s.entered != nil {
		close(s.entered)
		s.entered = nil
		<-s.release
		return errors.New("zdb down")
	}
	return s.applyLog.Apply(ctx, ops)
}

// TestWriteBehindLogBarrierSurvivesFailedFlush: a delete logged while a
// flush is in flight stays a barrier when that flush fails, so a page
// rewritten afterwards does not move past it (an unlisting must reach zdb
// before the entry and inode it unlists go).
func TestWriteBehindLogBarrierSurvivesFailedFlush(t *testing.T) {
	ctx := context.Background()
	pg := string(pageKey(7, 0))
	raw := &blockingLog{entered: make(chan struct{}), release: make(chan struct{})}
	s := newWBStore(raw)
	must(t, s.Apply(ctx, []Op{{Key: []byte("i1"), Value: []byte("a")}}))
	entered := raw.entered
	done := make(chan error)
	go func() { done <- s.Flush(ctx) }()
	<-entered // the flush of i1 is in flight
	// unlink Y: unlist it, then delete its entry and inode
	must(t, s.Apply(ctx, []Op{{Key: []byte(pg), Value: []byte("noY")}, {Key: []byte("eY"), Del: true}, {Key: []byte("iY"), Del: true}}))
	close(raw.release)
	if err := <-done; err == nil {
		t.Fatal("flush did not fail")
	}
	// create Z in the same directory: the page again
	must(t, s.Apply(ctx, []Op{{Key: []byte(pg), Value: []byte("noY+Z")}}))
	must(t, s.Flush(ctx))
	want := []string{"set i1=a", "set " + pg + "=noY", "del eY", "del iY", "set " + pg + "=noY+Z"}
	if !slices.Equal(raw.applied, want) {
		t.Fatalf("applied\n %q\nwant\n %q", raw.applied, want)
	}
}
