package server_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCompactCommand: COMPACT (ours) is admin-only, compacts the selected
// namespace only, answers once done with what it reclaimed, and the data
// survives a restart.
func TestCompactCommand(t *testing.T) {
	s, c := start(t, "--admin", "pw", "--datasize", "524288")
	c.expectErr("Permission denied", "COMPACT")
	c.ok("AUTH", "pw")
	c.ok("NSNEW", "x")
	c.ok("SELECT", "x")
	value := strings.Repeat("v", 4000)
	for round := 0; round < 5; round++ {
		for i := 0; i < 100; i++ {
			c.do("SET", "k"+strconv.Itoa(i), value+strconv.Itoa(round))
		}
	}
	c.ok("DEL", "k0")
	dataDir := filepath.Join(s.DataDir(), "x")
	before := dirSize(t, dataDir)
	c.expectErr("Unexpected arguments", "COMPACT", "now")
	in := parseInfo(t, string(c.bulk("COMPACT")))
	if in.int(t, "files_retired") == 0 || in.int(t, "bytes_reclaimed") <= 0 {
		t.Fatalf("COMPACT reclaimed nothing: %v", in.values)
	}
	after := dirSize(t, dataDir)
	live := in.int(t, "live_bytes")
	t.Logf("data %d -> %d bytes, live %d, reply %v", before, after, live, in.values)
	if after != in.int(t, "data_bytes_after") || float64(after) > 1.5*float64(live) {
		t.Fatalf("after COMPACT: %d bytes on disk, reply says %d, live %d", after, in.int(t, "data_bytes_after"), live)
	}
	check := func() {
		c.expect("$-1", "GET", "k0")
		for i := 1; i < 100; i++ {
			c.expect(strconv.Quote(value+"4"), "GET", "k"+strconv.Itoa(i))
		}
		if n := c.integer("DBSIZE"); n != 99 {
			t.Fatalf("DBSIZE %d", n)
		}
	}
	check()
	s.Restart()
	c = dial(t, s)
	c.ok("AUTH", "pw")
	c.ok("SELECT", "x")
	check()
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}
