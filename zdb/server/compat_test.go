package server_test

import (
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
