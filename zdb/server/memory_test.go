package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// What requests in flight may hold (docs/zdb.md, "Memory"), measured as
// the resident memory of the real zdb process.

const mib = 1 << 20

func memOf(t *testing.T, s *zdbtest.Server) (rss, peak int64) {
	t.Helper()
	rss, peak, err := s.Memory()
	if err != nil {
		t.Fatal(err)
	}
	return rss, peak
}

// bigArg is "$8388608\r\n" followed by 8 MiB of fill.
func bigArg(fill byte) []byte {
	b := []byte(fmt.Sprintf("$%d\r\n", 8*mib))
	return append(b, bytes.Repeat([]byte{fill}, 8*mib)...)
}

// TestMemoryManyLongArguments: a request of 1024 announced arguments of
// 8 MiB, half sent, holds one of them, not all (0-db's own limit on what
// a request may carry is 1024 x 8 MiB).
func TestMemoryManyLongArguments(t *testing.T) {
	t.Parallel()
	s, c := start(t)
	_, base := memOf(t, s)
	arg := append(bigArg('a'), '\r', '\n')
	const conns, args = 4, 6
	var wg sync.WaitGroup
	var open []net.Conn
	for i := 0; i < conns; i++ {
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, nc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
			nc.Write([]byte("*1024\r\n"))
			for j := 0; j < args; j++ {
				if _, err := nc.Write(arg); err != nil {
					return
				}
			}
			nc.Write(arg[:1*mib]) // and the next one half sent
		}()
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	c.expect("+PONG", "PING")
	_, peak := memOf(t, s)
	t.Logf("peak RSS %d MiB before, %d MiB after %d half-sent requests of %d x 8 MiB", base/mib, peak/mib, conns, args)
	if peak-base > 64*mib {
		t.Errorf("peak RSS grew by %d MiB: the arguments were kept", (peak-base)/mib)
	}
	for _, nc := range open {
		nc.Close()
	}
	alive(t, s)
}

// TestMemoryMGETStreams: MGET of one 8 MiB value many times, to a client
// that does not read, holds one value at a time.
func TestMemoryMGETStreams(t *testing.T) {
	t.Parallel()
	s, c := start(t)
	value := bytes.Repeat([]byte("v"), 8*mib)
	c.expect(`"big"`, "SET", "big", value)
	_, base := memOf(t, s)
	const n = 32
	req := []any{"MGET"}
	for i := 0; i < n; i++ {
		req = append(req, "big")
	}
	m := dial(t, s)
	m.send(req...)
	time.Sleep(time.Second) // the server reads values until the socket is full
	_, peak := memOf(t, s)
	t.Logf("peak RSS %d MiB before, %d MiB while MGET of %d x 8 MiB waits for its reader", base/mib, peak/mib, n)
	if peak-base > 48*mib {
		t.Errorf("peak RSS grew by %d MiB: the MGET reply was built whole", (peak-base)/mib)
	}
	// The reply is complete and right: read it without keeping it.
	item := fmt.Sprintf("$%d\r\n", 8*mib)
	want := int64(len(fmt.Sprintf("*%d\r\n", n)) + n*(len(item)+8*mib+2))
	m.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	prefix := fmt.Sprintf("*%d\r\n%s", n, item)
	head := make([]byte, len(prefix)+1)
	if _, err := io.ReadFull(m.nc, head); err != nil {
		t.Fatal(err)
	}
	if string(head) != prefix+"v" {
		t.Fatalf("MGET reply starts %q", head)
	}
	rest := want - int64(len(head))
	got, err := io.Copy(io.Discard, io.LimitReader(m.nc, rest))
	if err != nil || got != rest {
		t.Fatalf("MGET reply: %d of %d bytes, %v", got+int64(len(head)), want, err)
	}
	m.expect("+PONG", "PING")
}

// TestMemoryIdleConnectionsReturnBuffers: connections that carried a
// long argument do not keep its buffer once idle.
func TestMemoryIdleConnectionsReturnBuffers(t *testing.T) {
	t.Parallel()
	s, _ := start(t)
	base, _ := memOf(t, s)
	const conns = 16
	for i := 0; i < conns; i++ {
		c := dial(t, s)
		c.raw([]byte("*2\r\n$6\r\nEXISTS\r\n"))
		c.raw(append(bigArg(byte('a'+i)), '\r', '\n'))
		c.expectReply("-Invalid key")
	}
	time.Sleep(500 * time.Millisecond)
	rss, _ := memOf(t, s)
	t.Logf("RSS %d MiB at start, %d MiB with %d idle connections that each sent 8 MiB", base/mib, rss/mib, conns)
	if rss-base > 32*mib {
		t.Errorf("RSS of idle connections grew by %d MiB: argument buffers kept", (rss-base)/mib)
	}
}

// TestMemoryBudgetBackpressure: with --inflight 16M, two half-sent 8 MiB
// SETs hold the whole budget; a third waits (not an error) until one of
// them completes, while small requests are served all along.
func TestMemoryBudgetBackpressure(t *testing.T) {
	t.Parallel()
	s, small := start(t, "--inflight", "16M")
	small.expect(`"s"`, "SET", "s", "small")
	header := func(key string) []byte {
		return []byte(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, 8*mib))
	}
	half := bytes.Repeat([]byte("h"), 4*mib)
	a, b := dial(t, s), dial(t, s)
	a.raw(append(header("a"), half...))
	b.raw(append(header("b"), half...))
	time.Sleep(200 * time.Millisecond)

	waiting := dial(t, s)
	sent := make(chan error, 1)
	go func() {
		waiting.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := waiting.nc.Write(append(append(header("w"), bytes.Repeat([]byte("w"), 8*mib)...), '\r', '\n'))
		sent <- err
	}()
	waiting.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if v, err := waiting.r.ReadReply(); err == nil {
		t.Fatalf("a third 8 MiB SET was answered (%s) while two held the 16 MiB budget", v)
	}
	small.expect(`"small"`, "GET", "s")
	small.expect(`"t"`, "SET", "t", "tiny")
	small.expect("+PONG", "PING")

	a.raw(append(half, '\r', '\n'))
	a.expectReply(`"a"`)
	waiting.expectReply(`"w"`)
	if err := <-sent; err != nil {
		t.Fatalf("sending the waiting SET: %v", err)
	}
	b.nc.Close() // the other half-sent SET gives its share back too
	if got := small.bulk("GET", "w"); len(got) != 8*mib || got[0] != 'w' {
		t.Errorf("GET w: %d bytes", len(got))
	}
	small.expect("$-1", "GET", "b")
}

// TestMemoryRequestAboveBudget: a request that alone needs more than the
// budget is answered with an error, and the connection stays usable.
func TestMemoryRequestAboveBudget(t *testing.T) {
	t.Parallel()
	const tooLarge = "-Request too large for this server's memory budget (--inflight)"
	dir := t.TempDir()
	s := zdbtest.StartIn(t, dir)
	c := dial(t, s)
	c.expect(`"big"`, "SET", "big", bytes.Repeat([]byte("b"), 5*mib))
	c.expect(`"small"`, "SET", "small", "v")
	s.Stop()
	s = zdbtest.StartIn(t, dir, "--inflight", "4M")
	c = dial(t, s)
	c.expect(tooLarge, "SET", "k", bytes.Repeat([]byte("x"), 5*mib))
	c.expect("+PONG", "PING")
	c.expect("$-1", "GET", "k")
	c.expect(tooLarge, "GET", "big")
	c.expect(tooLarge, "MGET", "small", "big")
	c.expect(`["v"]`, "MGET", "small")
	c.expect(":1", "CHECK", "small")
	c.expect(fmt.Sprint(":", 5*mib), "LENGTH", "big")
	// 3 MiB fits
	c.expect(`"k3"`, "SET", "k3", bytes.Repeat([]byte("y"), 3*mib))
	if v := c.do("GET", "k3"); v.Kind != resp.KindBulk || len(v.Str) != 3*mib {
		t.Errorf("GET k3: %s", v.String()[:min(40, len(v.String()))])
	}
}

// TestMGETStopsWhenClientLeaves: an MGET whose client is gone reads no
// more values (each would take budget memory for nothing).
func TestMGETStopsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	s, c := start(t)
	c.expect(`"big"`, "SET", "big", bytes.Repeat([]byte("v"), 8*mib))
	req := []any{"MGET"}
	for i := 0; i < 256; i++ {
		req = append(req, "big")
	}
	m := dial(t, s)
	m.send(req...)
	time.Sleep(200 * time.Millisecond)
	m.nc.Close()
	read := func() int64 {
		return parseInfo(t, string(c.bulk("INFO"))).int(t, "data_disk_read_bytes")
	}
	time.Sleep(500 * time.Millisecond)
	before := read()
	time.Sleep(500 * time.Millisecond)
	if after := read(); after != before {
		t.Errorf("the server read %d MiB more for a client that left", (after-before)/mib)
	}
}
