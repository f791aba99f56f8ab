package meta

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkZDBRecord stores and reads 1 KiB records on four real zdb
// metadata backends on loopback: the cost of a Put (seal, quorum write)
// and of a Get (every answer authenticated, quorum read).
func BenchmarkZDBRecord(b *testing.B) {
	_, cfgs := startBackends(b, 4)
	s, err := NewZDB(context.Background(), cfgs, "bench", fastOpts()...)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	value := make([]byte, 1024)
	b.Run("put", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := s.Put(ctx, fmt.Sprintf("k%d", i%100), value); err != nil {
				b.Fatal(err)
			}
		}
	})
	s.settle()
	b.Run("get", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Get(ctx, fmt.Sprintf("k%d", i%100)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
