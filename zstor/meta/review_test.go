package meta

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// decode never panics, and accepts only what encode makes: every
// truncation and single-byte change of a valid envelope is refused
// (corrupt or unauthentic, or an unknown format when the format byte
// changed).
func TestReviewEnvelopeMutations(t *testing.T) {
	var valid [][]byte
	for _, c := range []struct {
		st   stamp
		tomb bool
		v    []byte
	}{{stamp{version: 42 << 16, writer: 7}, false, []byte("some value")}, {stamp{version: 43 << 16, writer: 7}, false, nil},
		{stamp{version: 44 << 16, writer: 7}, true, nil}} {
		b, err := testEnv.encode("k", c.st, c.tomb, c.v)
		if err != nil {
			t.Fatal(err)
		}
		valid = append(valid, b)
	}
	for _, v := range valid {
		if _, err := testEnv.decode("k", v, 0); err != nil {
			t.Fatal(err)
		}
		for n := range len(v) {
			if _, err := testEnv.decode("k", v[:n], 0); err == nil {
				t.Fatalf("truncated to %d of %d bytes: accepted", n, len(v))
			}
		}
		for i := range v {
			for _, x := range []byte{1, 0x80, 0xff} {
				m := append([]byte(nil), v...)
				m[i] ^= x
				if _, err := testEnv.decode("k", m, 0); err == nil {
					t.Fatalf("byte %d ^ %#x: accepted", i, x)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		junk := make([]byte, r.IntN(96))
		for i := range junk {
			junk[i] = byte(r.UintN(256))
		}
		if r.IntN(2) == 0 && len(junk) >= 3 {
			junk[0], junk[1], junk[2] = 'Q', 'M', byte(1+r.IntN(2))
		}
		if _, err := testEnv.decode("k", junk, 0); err == nil {
			t.Fatalf("junk % x accepted", junk)
		}
	}
}

// Junk of every small size under the store's prefix on every backend (the
// sizes a SCAN reads as tombstone, live or neither) neither breaks Keys
// nor Get: Get finds no record under such a key, and real records around
// it are still listed and read. (Keys decides from SCAN sizes alone, as
// documented, so junk of a live record's size is listed; callers skip the
// keys whose Get finds nothing.)
func TestReviewJunkRecords(t *testing.T) {
	bs, cfgs := startBackends(t, 3)
	s := newTestZDB(t, cfgs, "p")
	ctx := context.Background()
	mustPut(t, s, "real", "value")
	s.settle()
	for _, b := range bs {
		c := b.direct(t)
		for n := range 30 {
			junk := make([]byte, n)
			copy(junk, "QM\x01\x01")
			if _, _, err := c.Set(ctx, fmt.Appendf(nil, "p/junk%02d", n), junk); err != nil {
				t.Fatal(err)
			}
		}
	}
	keys := collectKeys(t, s, "")
	if !slices.Contains(keys, "real") || len(keys) > 1+30-v1LiveHeaderLen {
		t.Fatalf("keys %q", keys)
	}
	for n := range 30 {
		mustNotFound(t, s, fmt.Sprintf("junk%02d", n))
	}
	mustGet(t, s, "real", "value")
}
