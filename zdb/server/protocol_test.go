package server_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// §1 wire basics, protocol errors and hostile input; pipelining.

// afterBadInput checks that a client connected before the bad input and a
// new client are both still served.
func afterBadInput(t *testing.T, s *zdbtest.Server, witness *client) {
	t.Helper()
	with(t, witness)
	witness.expect("+PONG", "PING")
	witness.expect(`"witness"`, "GET", "w")
	alive(t, s)
}

func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	s, setup := start(t)
	setup.expect(`"w"`, "SET", "w", "witness")
	witness := dial(t, s)

	t.Run("inline-command-then-close", func(t *testing.T) {
		c := dial(t, s)
		c.raw([]byte("PING\r\n"))
		c.expectReply("-Malformed request, array expected")
		c.expectClosed()
		afterBadInput(t, s, witness)
	})
	t.Run("empty-array-missing-arguments", func(t *testing.T) {
		c := dial(t, s)
		c.raw([]byte("*0\r\n"))
		c.expectReply("-Missing arguments")
		c.expect("+PONG", "PING")
		afterBadInput(t, s, witness)
	})
	t.Run("too-many-arguments-answered-at-once-then-close", func(t *testing.T) {
		// Only the header: 0-db answers before any argument arrives (its
		// own test suite sends the header alone and waits for the reply).
		c := dial(t, s)
		c.raw([]byte("*1025\r\n"))
		c.expectReply("-Too many arguments")
		c.expectClosed()
		afterBadInput(t, s, witness)
	})
	t.Run("too-many-arguments-whole-request-then-close", func(t *testing.T) {
		// The arguments already sent do not cost the client its reply.
		c := dial(t, s)
		var b bytes.Buffer
		b.WriteString("*1025\r\n$3\r\nGET\r\n")
		for i := 1; i < 1025; i++ {
			b.WriteString("$1\r\nx\r\n")
		}
		b.WriteString("*1\r\n$4\r\nPING\r\n")
		c.raw(b.Bytes())
		c.expectReply("-Too many arguments")
		c.expectClosed()
		afterBadInput(t, s, witness)
	})
	t.Run("1024-arguments-accepted", func(t *testing.T) {
		c := dial(t, s)
		req := []any{"MGET"}
		for i := 1; i < 1024; i++ {
			req = append(req, "w")
		}
		v := c.do(req...)
		if v.Kind != resp.KindArray || len(v.Array) != 1023 || v.Array[1022].String() != `"witness"` {
			t.Errorf("MGET with 1024 arguments: %d elements, kind %c", len(v.Array), v.Kind)
		}
	})
	t.Run("non-bulk-element", func(t *testing.T) {
		c := dial(t, s)
		c.raw([]byte("*2\r\n$3\r\nGET\r\n:5\r\n"))
		c.expectReply("-Malformed query string")
		afterBadInput(t, s, witness)
	})
	for name, in := range map[string]string{
		"bad-array-length":      "*abc\r\n",
		"negative-bulk":         "*1\r\n$-1\r\n",
		"bulk-longer-than-said": "*1\r\n$3\r\nGETX\r\n",
		"bulk-without-crlf":     "*1\r\n$4\r\nPING!!\r\n",
		"simple-string-element": "*1\r\n+PING\r\n",
		"huge-array-length":     "*99999999999999999999999\r\n",
	} {
		t.Run("malformed/"+name, func(t *testing.T) {
			c := dial(t, s)
			c.raw([]byte(in))
			v, err := c.tryRead()
			if err == nil && v.Kind != resp.KindError {
				t.Errorf("%q: got %s, want an error reply or a close", in, v)
			}
			afterBadInput(t, s, witness)
		})
	}
	t.Run("payload-exactly-8MiB-accepted", func(t *testing.T) {
		c := dial(t, s)
		big := bytes.Repeat([]byte("0123456789abcdef"), (8<<20)/16)
		big[len(big)-1] = 'Z'
		c.expect(`"big"`, "SET", "big", big)
		got := c.bulk("GET", "big")
		if !bytes.Equal(got, big) {
			t.Errorf("GET of the 8 MiB value: %d bytes, equal=%v", len(got), bytes.Equal(got, big))
		}
		c.expect(fmt.Sprint(":", 8<<20), "LENGTH", "big")
		c.expect(":1", "CHECK", "big")
	})
	t.Run("payload-8MiB-plus-1-too-big-then-close", func(t *testing.T) {
		c := dial(t, s)
		// only the header: the server must answer before the payload
		c.raw([]byte(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n", 8<<20+1)))
		c.expectReply("-Payload too big")
		c.expectClosed()
		afterBadInput(t, s, witness)
	})
	t.Run("payload-too-big-in-command-name", func(t *testing.T) {
		c := dial(t, s)
		c.raw([]byte(fmt.Sprintf("*1\r\n$%d\r\n", 1<<40)))
		c.expectReply("-Payload too big")
		c.expectClosed()
		afterBadInput(t, s, witness)
	})
	t.Run("unknown-command", func(t *testing.T) {
		c := dial(t, s)
		c.expectErr("Command not supported", "FOO")
		c.expectErr("Command not supported", "GETT", "w")
		c.expectErr("Command not supported", strings.Repeat("X", 100))
		c.expectErr("Command not supported", "\x00\xff")
		c.expect("+PONG", "PING")
	})
	t.Run("empty-command-name", func(t *testing.T) {
		c := dial(t, s)
		c.expectErr("This is not a valid command", "")
		c.expectErr("This is not a valid command", "", "x")
		c.expect("+PONG", "PING")
	})
	t.Run("case-insensitive", func(t *testing.T) {
		c := dial(t, s)
		c.expect("+PONG", "pInG")
		c.expect(`"ci"`, "sEt", "ci", "v")
		c.expect(`"v"`, "get", "ci")
		c.expect(":1", "Exists", "ci")
		c.expect(`["v"]`, "mget", "ci")
		v := c.do("nslist")
		if v.Kind != resp.KindArray {
			t.Errorf("nslist: %s", v)
		}
		c.ok("select", "default")
		c.ok("del", "ci")
	})
	t.Run("error-replies-have-no-ERR-prefix", func(t *testing.T) {
		nc := dialRaw(t, s.Addr())
		wire(t, nc, "-Key not found\r\n", "DEL", "nothing")
		wire(t, nc, "$-1\r\n", "GET", "nothing")
	})
	t.Run("binary-garbage", func(t *testing.T) {
		rng := rand.New(rand.NewSource(1))
		for round := 0; round < 20; round++ {
			garbage := make([]byte, 1+rng.Intn(64<<10))
			rng.Read(garbage)
			if round%2 == 1 {
				garbage[0] = '*' // get past the first check
			}
			c := dial(t, s)
			c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
			c.nc.Write(garbage) // the server may close before reading it all
			// every reply must be an error; the server closes or waits
			c.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			for {
				v, err := c.r.ReadReply()
				if err != nil {
					break
				}
				if v.Kind != resp.KindError {
					t.Errorf("round %d: garbage got a non-error reply %s", round, v)
				}
			}
			c.nc.Close()
		}
		afterBadInput(t, s, witness)
	})
	t.Run("half-sent-requests-then-close", func(t *testing.T) {
		for _, in := range []string{
			"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nva",
			"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nvalue",
			"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nvalue\r",
			"*3\r\n$3\r\nSET\r\n$4\r\nhalf",
			"*2\r\n$3\r\nGE",
			"*2\r\n$",
			"*",
			"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$8388608\r\n" + strings.Repeat("x", 1<<20),
		} {
			c := dial(t, s)
			c.raw([]byte(in))
			time.Sleep(5 * time.Millisecond)
			c.nc.Close()
		}
		with(t, witness)
		witness.expect("$-1", "GET", "half")
		afterBadInput(t, s, witness)
	})
	t.Run("half-sent-request-does-not-block-others", func(t *testing.T) {
		c := dial(t, s)
		c.raw([]byte("*3\r\n$3\r\nSET\r\n$2\r\nhk\r\n$2\r\nv"))
		time.Sleep(50 * time.Millisecond)
		afterBadInput(t, s, witness)
		c.raw([]byte("v\r\n"))
		c.expectReply(`"hk"`)
		c.expect(`"vv"`, "GET", "hk")
	})
}

func TestIdleConnections(t *testing.T) {
	t.Parallel()
	s, c := start(t)
	const idle = 2000
	var (
		stop    atomic.Bool
		worker  sync.WaitGroup
		ops     atomic.Int64
		slowest atomic.Int64
		werr    atomic.Value
	)
	worker.Add(1)
	go func() {
		defer worker.Done()
		for i := 0; !stop.Load(); i++ {
			begin := time.Now()
			key := fmt.Sprint("w", i%50)
			if v, err := c.tryDo("SET", key, fmt.Sprint(i)); err != nil || v.Kind != resp.KindBulk {
				werr.Store(fmt.Sprintf("SET: %s %v", v, err))
				return
			}
			if v, err := c.tryDo("GET", key); err != nil || v.String() != fmt.Sprintf("%q", fmt.Sprint(i)) {
				werr.Store(fmt.Sprintf("GET: %s %v", v, err))
				return
			}
			if d := int64(time.Since(begin)); d > slowest.Load() {
				slowest.Store(d)
			}
			ops.Add(1)
		}
	}()

	conns := make([]net.Conn, idle)
	var wg sync.WaitGroup
	var dialErr atomic.Value
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < idle; i += 20 {
				nc, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
				if err != nil {
					dialErr.Store(err)
					return
				}
				conns[i] = nc
			}
		}(g)
	}
	wg.Wait()
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	if err := dialErr.Load(); err != nil {
		t.Fatalf("opening %d connections: %v", idle, err)
	}
	// the idle connections are real sessions: some of them answer
	for i := 0; i < idle; i += 250 {
		ic := &client{t: t, nc: conns[i], w: resp.NewWriter(conns[i], 512), r: resp.NewReplyReader(conns[i], 512)}
		ic.expect("+PONG", "PING")
	}
	time.Sleep(100 * time.Millisecond)
	stop.Store(true)
	worker.Wait()
	if e := werr.Load(); e != nil {
		t.Fatalf("worker failed while %d connections were idle: %v", idle, e)
	}
	if ops.Load() == 0 {
		t.Fatal("worker made no progress")
	}
	if d := time.Duration(slowest.Load()); d > time.Second {
		t.Errorf("slowest SET+GET while connections were opened: %v", d)
	}
	in := parseInfo(t, string(c.bulk("INFO")))
	if n := in.int(t, "clients_lifetime"); n < idle+1 {
		t.Errorf("clients_lifetime = %d, want >= %d", n, idle+1)
	}
	alive(t, s)
}

func TestPipelining(t *testing.T) {
	t.Parallel()
	t.Run("1000-SETs-in-one-write", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		var buf bytes.Buffer
		w := resp.NewWriter(&buf, 1<<16)
		const n = 1000
		for i := 0; i < n; i++ {
			w.Command([]byte("SET"), []byte(fmt.Sprintf("p%04d", i)), []byte(fmt.Sprint("value-", i)))
		}
		w.Flush()
		c.raw(buf.Bytes())
		for i := 0; i < n; i++ {
			v, err := c.tryRead()
			if err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			if want := fmt.Sprintf(`"p%04d"`, i); v.String() != want {
				t.Fatalf("reply %d = %s, want %s", i, v, want)
			}
		}
		c.expect(fmt.Sprint(":", n), "DBSIZE")
		c.expect(`"value-999"`, "GET", "p0999")
	})
	t.Run("mixed-batch-in-order", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		var buf bytes.Buffer
		w := resp.NewWriter(&buf, 1<<16)
		reqs := [][]string{
			{"SET", "a", "1"}, {"GET", "a"}, {"NOPE"}, {"SET", "a", "1"}, {"DEL", "zz"},
			{"EXISTS", "a"}, {"PING"}, {"MGET", "a", "b"}, {"DEL", "a"}, {"GET", "a"},
		}
		want := []string{`"a"`, `"1"`, "-Command not supported", "$-1", "-Key not found",
			":1", "+PONG", `["1", $-1]`, "+OK", "$-1"}
		for _, r := range reqs {
			var a [][]byte
			for _, s := range r {
				a = append(a, []byte(s))
			}
			w.Command(a...)
		}
		w.Flush()
		c.raw(buf.Bytes())
		for i := range reqs {
			if got := c.read().String(); got != want[i] {
				t.Errorf("reply %d to %v = %s, want %s", i, reqs[i], got, want[i])
			}
		}
	})
	t.Run("batch-ending-in-fatal-error", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.raw([]byte("*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGARBAGE\r\n"))
		c.expectReply("+PONG")
		c.expectReply(`"k"`)
		c.expectReply("-Malformed request, array expected")
		c.expectClosed()
		dial(t, s).expect(`"v"`, "GET", "k")
	})
}
