package server_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"qss/internal/resp"
)

// Behaviours of 0-db v2.0.7 that follow from its source rather than its
// documentation: command names matched by prefix in its table order, WAIT
// on any command, commands that ignore extra arguments.

func TestCommandPrefixes(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	c.expect(`"k"`, "SET", "k", "v")
	for _, tc := range []struct {
		want string
		req  []any
	}{
		// unique prefixes
		{`"v"`, []any{"G", "k"}},
		{`"v"`, []any{"ge", "k"}},
		{`["v"]`, []any{"MG", "k"}},
		{`["default"]`, []any{"NSL"}},
		{":1", []any{"ex", "k"}},
		{":1", []any{"LEN", "k"}},
		{`["default"]`, []any{"nslist"}},
		// ambiguous prefixes: the first command of 0-db's table wins
		{"-Unexpected arguments", []any{"S", "k"}},       // SET, not SCAN, SELECT or STOP
		{"+PONG", []any{"P"}},                            // PING
		{"-Invalid key format", []any{"RS", "x"}},        // RSCAN
		{"-Invalid argument", []any{"NS", ""}},           // NSNEW, not NSDEL, NSLIST, NSSET, NSINFO, NSJUMP
		{"-Unexpected arguments", []any{"D"}},            // DATA, not DEL or DBSIZE
		{"-Key not found", []any{"DE", "missing"}},       // DEL
		{":1", []any{"DB"}},                              // DBSIZE
		{"-Command not supported", []any{"M", "k"}},      // MIRROR (replication, not ours), not MGET
		{"-Command not supported", []any{"K"}},           // KSCAN (not ours), not KEYCUR or KEYTIME
		{"-Key not found", []any{"KEY", "missing"}},      // KEYCUR, not KEYTIME
		{"-Invalid timeout", []any{"W", "SET", "1"}},     // WAIT
		{"[]", []any{"H"}},                               // HOOKS (no hook ran), not HISTORY
		{"-This is not a valid command", []any{"*"}},     // the first entry of the table
		{"-This is not a valid command", []any{""}},      // an empty name matches it too
		{"-Command not supported", []any{"GETX", "k"}},   // longer than any command
		{"-Command not supported", []any{"X"}},           // no command starts with X
		{`"v"`, []any{"GET\x00junk", "k"}},               // strncasecmp stops at a NUL byte
		{"-Command not supported", []any{"GE\x00", "k"}}, // ... but not before the end of the name
		{"-Command not supported", []any{strings.Repeat("G", 100)}},
	} {
		c.expect(tc.want, tc.req...)
	}
	// COMPACT is ours: it comes after 0-db's commands, so C stays CHECK.
	c.expect(":1", "C", "k")
}

func TestExtraArgumentsIgnored(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	c.expect("+PONG", "PING", "x", "y")
	if v := c.do("TIME", "x"); v.Kind != resp.KindArray || len(v.Array) != 2 {
		t.Errorf("TIME x: %s", v)
	}
	c.expect(":0", "DBSIZE", "x")
	if v := c.do("INFO", "server"); v.Kind != resp.KindBulk || !strings.Contains(string(v.Str), "# server") {
		t.Errorf("INFO server: %s", v)
	}
	c.expect(`["default"]`, "NSLIST", "x")
	c.expect("-Flushing public namespace denied", "FLUSH", "x")
	c.ok("NSJUMP", "x")
	c.expect("[]", "HOOKS", "x")
}

func TestWAITAnyCommand(t *testing.T) {
	t.Parallel()
	s, c := start(t)
	other := dial(t, s)
	t.Run("PING-wakes", func(t *testing.T) {
		with(t, c, other)
		c.send("WAIT", "PING", "3000")
		time.Sleep(150 * time.Millisecond)
		other.expect("+PONG", "PING")
		c.expectReply("+PING")
	})
	t.Run("prefix-names-the-command", func(t *testing.T) {
		with(t, c, other)
		c.send("WAIT", "nsl", "3000")
		time.Sleep(150 * time.Millisecond)
		other.expect(`["default"]`, "NSLIST")
		c.expectReply("+NSLIST")
	})
	t.Run("an-alias-is-its-own-command", func(t *testing.T) {
		with(t, c, other)
		c.send("WAIT", "SET", "600")
		time.Sleep(100 * time.Millisecond)
		other.expect(`"a"`, "SETX", "a", "1")
		c.expectReply("-Timeout")
	})
	t.Run("failed-command-wakes", func(t *testing.T) {
		with(t, c, other)
		c.send("WAIT", "DEL", "3000")
		time.Sleep(150 * time.Millisecond)
		other.expect("-Key not found", "DEL", "nothing")
		c.expectReply("+DEL")
	})
	t.Run("empty-name-is-star", func(t *testing.T) {
		with(t, c, other)
		c.send("WAIT", "", "3000")
		time.Sleep(150 * time.Millisecond)
		other.expect(":1", "DBSIZE") // the SETX above
		c.expectReply("+DBSIZE")
	})
	t.Run("unknown-command", func(t *testing.T) {
		with(t, c)
		c.expectErr("Unknown command to watch", "WAIT", "NOPE")
		c.expectErr("Unknown command to watch", "WAIT", "NOPE", "abc")
	})
	t.Run("argument-count", func(t *testing.T) {
		with(t, c)
		c.expectErr("Invalid arguments", "WAIT")
		c.expectErr("Invalid arguments", "WAIT", "SET", "100", "x")
	})
	t.Run("timeout-parsed-as-strtoull", func(t *testing.T) {
		with(t, c)
		begin := time.Now()
		c.expectErr("Timeout", "WAIT", "SET", "150ms")
		if d := time.Since(begin); d < 140*time.Millisecond || d > 2*time.Second {
			t.Errorf("WAIT SET 150ms took %v", d)
		}
		c.expectErr("Invalid timeout", "WAIT", "SET", strings.Repeat("0", 16)+"5")
	})
}

func TestSETTimestampAsAtoll(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	// 0-db converts the timestamp with atoll and stores it as a u32,
	// whatever it is: 0 stays 0 (not "now").
	for _, tc := range []struct{ ts, want string }{
		{"abc", "0"},
		{"0", "0"},
		{"123abc", "123"},
		{" 42", "42"},
		{"+7", "7"},
		{"-1", "4294967295"},
		{"4294967297", "1"},
		{"99999999999999999999999", "4294967295"}, // atoll saturates
		{"1700000000", "1700000000"},
	} {
		key := "k" + tc.ts
		c.expect(quoted([]byte(key)), "SET", key, "v", tc.ts)
		c.expect(":"+tc.want, "KEYTIME", key)
	}
}

func TestINDEXDIRTYRightAfterWrites(t *testing.T) {
	t.Parallel()
	s, c := start(t)
	c.expect(`"k"`, "SET", "k", "v")
	c.expect(`"gone"`, "SET", "gone", "v")
	s.Restart()
	c = dial(t, s)
	c.expect("[]", "INDEX", "DIRTY")
	// A write after the reset, in the same batch as the write it changes
	// (not yet committed when the reset runs), still marks the file.
	c.raw(bytes.Join([][]byte{
		cmd("SET", "p", "1"), cmd("INDEX", "DIRTY", "RESET"), cmd("DEL", "p"), cmd("INDEX", "DIRTY"),
	}, nil))
	c.expectReply(`"p"`)
	c.expectReply("+OK")
	c.expectReply("+OK")
	c.expectReply("[:0]")
	// a deletion alone marks the file of the entry it flags
	c.ok("INDEX", "DIRTY", "RESET")
	c.ok("DEL", "gone")
	c.expect("[:0]", "INDEX", "DIRTY")
}

func TestNSINFONextInternalID(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	for i := 0; i < 4; i++ {
		c.send("SET", fmt.Sprint("k", i), "v")
		c.read()
	}
	// 0-db prints the byte-swapped u64 with 0x%08x
	if got := c.nsinfo("default").values["next_internal_id"]; got != "0x400000000000000" {
		t.Errorf("next_internal_id after 4 entries = %s, want 0x400000000000000", got)
	}
	c.ok("NSNEW", "e")
	if got := c.nsinfo("e").values["next_internal_id"]; got != "0x00000000" {
		t.Errorf("next_internal_id of an empty namespace = %s, want 0x00000000", got)
	}
}

// cmd encodes one request.
func cmd(a ...any) []byte {
	var b bytes.Buffer
	w := resp.NewWriter(&b, 256)
	w.Command(args(a)...)
	w.Flush()
	return b.Bytes()
}
