package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"qss/internal/resp"
)

// The worked examples of §11, checked byte for byte on the wire.

// wire sends a request on nc and checks that the reply bytes are exactly
// want. It returns what it read.
func wire(t *testing.T, nc net.Conn, want string, a ...any) []byte {
	t.Helper()
	var req bytes.Buffer
	w := resp.NewWriter(&req, 4096)
	w.Command(args(a)...)
	w.Flush()
	nc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := nc.Write(req.Bytes()); err != nil {
		t.Fatalf("%s: write: %v", render(a), err)
	}
	got := make([]byte, len(want))
	n, err := io.ReadFull(nc, got)
	if err != nil {
		t.Fatalf("%s: read %q, then %v (want %q)", render(a), got[:n], err, want)
	}
	if string(got) != want {
		t.Errorf("%s\n got: %q\nwant: %q", render(a), got, want)
	}
	return got
}

// dialRaw opens a plain connection for byte-exact checks.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func TestExamples(t *testing.T) {
	t.Parallel()
	t.Run("example-1-user-keys", func(t *testing.T) {
		t.Parallel()
		s, _ := start(t)
		nc := dialRaw(t, s.Addr())
		wire(t, nc, "$2\r\nk1\r\n", "SET", "k1", "v1")
		wire(t, nc, "$-1\r\n", "SET", "k1", "v1")
		wire(t, nc, "$2\r\nk1\r\n", "SET", "k1", "v2")
		wire(t, nc, "$2\r\nv2\r\n", "GET", "k1")
		wire(t, nc, "+OK\r\n", "DEL", "k1")
		wire(t, nc, "-Key not found\r\n", "DEL", "k1")
		wire(t, nc, ":0\r\n", "EXISTS", "k1")
		wire(t, nc, "-Invalid argument\r\n", "GET", "")
		wire(t, nc, "-Unexpected arguments\r\n", "SET", "k")
	})
	t.Run("example-2-seq-namespace", func(t *testing.T) {
		t.Parallel()
		s, _ := start(t)
		nc := dialRaw(t, s.Addr())
		wire(t, nc, "+OK\r\n", "NSNEW", "s")
		wire(t, nc, "+OK\r\n", "NSSET", "s", "mode", "seq")
		wire(t, nc, "+OK\r\n", "SELECT", "s")
		wire(t, nc, "$8\r\n\x00\x00\x00\x00\x00\x00\x00\x00\r\n", "SET", "", "a")
		wire(t, nc, "$8\r\n\x01\x00\x00\x00\x00\x00\x00\x00\r\n", "SET", "", "b")
		wire(t, nc, "$8\r\n\x00\x00\x00\x00\x00\x00\x00\x00\r\n", "SET", le8(0), "c")
		wire(t, nc, "$8\r\n\x03\x00\x00\x00\x00\x00\x00\x00\r\n", "SET", "", "d")
		wire(t, nc, "-Invalid key, only update authorized\r\n", "SET", le8(9), "x")
		wire(t, nc, "$-1\r\n", "GET", []byte{0, 0, 0, 0})
		// and the values behind the ids
		wire(t, nc, "$1\r\nc\r\n", "GET", le8(0))
		wire(t, nc, "$1\r\nb\r\n", "GET", le8(1))
		wire(t, nc, "$1\r\nd\r\n", "GET", le8(3))
	})
	t.Run("example-3-scan-and-history", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "fresh")
		c.ok("SELECT", "fresh")
		c.expect(`"a"`, "SET", "a", "1")
		c.expect(`"b"`, "SET", "b", "22")
		c.expect(`"a"`, "SET", "a", "333")
		v := c.do("SCAN")
		cur, keys := scanReply(t, v)
		want := cursor(1, 0, 3, 0x63, zcrc([]byte("333")))
		if !bytes.Equal(cur, want) {
			t.Errorf("SCAN cursor %x, want %x", cur, want)
		}
		if fmt.Sprint(keys) != "[b a]" {
			t.Errorf("SCAN keys %v, want [b a]", keys)
		}
		ts := c.integer("KEYTIME", "a")
		tsb := c.integer("KEYTIME", "b")
		if got, want := v.Array[1].String(), fmt.Sprintf(`[["b", :2, :%d], ["a", :3, :%d]]`, tsb, ts); got != want {
			t.Errorf("SCAN entries %s, want %s", got, want)
		}
		ekey := []byte{0, 0, 0, 0, 0x1d, 0, 0, 0}
		h := c.do("HISTORY", "a")
		if h.Kind != resp.KindArray || len(h.Array) != 3 || !bytes.Equal(h.Array[0].Str, ekey) ||
			h.Array[2].String() != `"333"` || h.Array[1].Kind != resp.KindBulk {
			t.Fatalf("HISTORY a = %s, want [%q, \"<ts>\", \"333\"]", h, ekey)
		}
		if n, err := strconv.ParseInt(string(h.Array[1].Str), 10, 64); err != nil || n != ts {
			t.Errorf("HISTORY ts %q, KEYTIME %d", h.Array[1].Str, ts)
		}
		h = c.do("HISTORY", "a", ekey)
		if h.Kind != resp.KindArray || len(h.Array) != 3 || !h.Array[0].Nil || h.Array[2].String() != `"1"` {
			t.Fatalf("HISTORY a <ekey> = %s, want [$-1, \"<ts>\", \"1\"]", h)
		}
		if _, err := strconv.ParseInt(string(h.Array[1].Str), 10, 64); err != nil {
			t.Errorf("HISTORY ts %q is not decimal", h.Array[1].Str)
		}
		// on the wire: the ekey is a $8 bulk, the ts a bulk decimal string
		nc := dialRaw(t, c.nc.RemoteAddr().String())
		wire(t, nc, "+OK\r\n", "SELECT", "fresh")
		tsStr := strconv.FormatInt(ts, 10)
		wire(t, nc, fmt.Sprintf("*3\r\n$8\r\n%s\r\n$%d\r\n%s\r\n$3\r\n333\r\n", ekey, len(tsStr), tsStr), "HISTORY", "a")
	})
	t.Run("example-4-admin-and-passwords", func(t *testing.T) {
		t.Parallel()
		s, _ := start(t, "--admin", "pw")
		admin := dialRaw(t, s.Addr())
		wire(t, admin, "-Permission denied\r\n", "NSNEW", "x")
		wire(t, admin, "+OK\r\n", "AUTH", "pw")
		wire(t, admin, "+OK\r\n", "NSNEW", "u")
		wire(t, admin, "+OK\r\n", "NSSET", "u", "password", "p")
		other := dialRaw(t, s.Addr())
		wire(t, other, "+OK\r\n", "SELECT", "u")
		wire(t, other, "-Namespace is in read-only mode\r\n", "SET", "k", "v")
		wire(t, admin, "+OK\r\n", "NSSET", "u", "public", "0")
		wire(t, other, "-Namespace protected and private\r\n", "SELECT", "u")
		wire(t, other, "+OK\r\n", "SELECT", "u", "p")
		wire(t, other, "$1\r\nk\r\n", "SET", "k", "v")
	})
}
