package server_test

// Black-box conformance tests of the zdb server against docs/zdb.md
// (shared/spec/zdb.md): every test starts real zdb processes through
// internal/zdbtest and talks raw RESP over TCP loopback.

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// ioTimeout bounds every read and write of a test client, so that a server
// that does not answer fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

// client is a raw RESP connection to a server.
type client struct {
	t  testing.TB
	nc net.Conn
	w  *resp.Writer
	r  *resp.ReplyReader
}

func dialAddr(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, w: resp.NewWriter(nc, 64<<10), r: resp.NewReplyReader(nc, 64<<10)}
}

func dial(t testing.TB, s *zdbtest.Server) *client {
	t.Helper()
	return dialAddr(t, s.Addr())
}

// start runs a server with flags and returns it with one connected client.
func start(t testing.TB, flags ...string) (*zdbtest.Server, *client) {
	t.Helper()
	s := zdbtest.Start(t, flags...)
	return s, dial(t, s)
}

// args turns strings, byte slices and integers into request arguments.
func args(in []any) [][]byte {
	out := make([][]byte, len(in))
	for i, a := range in {
		switch v := a.(type) {
		case string:
			out[i] = []byte(v)
		case []byte:
			out[i] = v
		case int:
			out[i] = []byte(strconv.Itoa(v))
		default:
			panic(fmt.Sprintf("bad argument type %T", a))
		}
	}
	return out
}

// render shows a request in failure messages, long arguments shortened.
func render(in []any) string {
	parts := make([]string, len(in))
	for i, a := range args(in) {
		if len(a) > 40 {
			parts[i] = fmt.Sprintf("<%d bytes>", len(a))
		} else {
			parts[i] = strconv.Quote(string(a))
		}
	}
	return strings.Join(parts, " ")
}

// send writes one request without reading the reply.
func (c *client) send(a ...any) {
	c.t.Helper()
	if err := c.trySend(a...); err != nil {
		c.t.Fatalf("send %s: %v", render(a), err)
	}
}

func (c *client) trySend(a ...any) error {
	c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	c.w.Command(args(a)...)
	return c.w.Flush()
}

// raw writes bytes as they are.
func (c *client) raw(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one reply.
func (c *client) read() resp.Value {
	c.t.Helper()
	v, err := c.tryRead()
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return v
}

func (c *client) tryRead() (resp.Value, error) {
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	return c.r.ReadReply()
}

// do sends a request and reads its reply.
func (c *client) do(a ...any) resp.Value {
	c.t.Helper()
	c.send(a...)
	return c.read()
}

// tryDo is do for goroutines other than the test's: it never calls Fatal.
func (c *client) tryDo(a ...any) (resp.Value, error) {
	if err := c.trySend(a...); err != nil {
		return resp.Value{}, err
	}
	return c.tryRead()
}

// expect sends a request and checks the rendering of its reply
// (resp.Value.String: "-Key not found", "$-1", ":1", "\"k1\"", "[...]").
func (c *client) expect(want string, a ...any) resp.Value {
	c.t.Helper()
	v := c.do(a...)
	if got := v.String(); got != want {
		c.t.Errorf("%s\n got: %s\nwant: %s", render(a), got, want)
	}
	return v
}

// expectReply reads one reply (of a request sent earlier) and checks it.
func (c *client) expectReply(want string) {
	c.t.Helper()
	if got := c.read().String(); got != want {
		c.t.Errorf("reply\n got: %s\nwant: %s", got, want)
	}
}

// with points the clients' failures at t for the duration of subtest t.
func with(t *testing.T, cs ...*client) {
	for _, c := range cs {
		old := c.t
		c.t = t
		t.Cleanup(func() { c.t = old })
	}
}

// expectErr checks for an error reply with exactly this text (no '-').
func (c *client) expectErr(text string, a ...any) {
	c.t.Helper()
	c.expect("-"+text, a...)
}

// expectClosed checks that the server closes the connection: the next read
// finds EOF (or a reset) rather than a reply or a timeout.
func (c *client) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	v, err := c.r.ReadReply()
	if err == nil {
		c.t.Fatalf("connection still open: got reply %s", v)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection not closed by the server within %v", ioTimeout)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
		c.t.Fatalf("expected the connection closed, got %v", err)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// bulk returns a bulk reply's payload, failing on anything else.
func (c *client) bulk(a ...any) []byte {
	c.t.Helper()
	v := c.do(a...)
	if v.Kind != resp.KindBulk || v.Nil {
		c.t.Fatalf("%s: want a bulk string, got %s", render(a), v)
	}
	return v.Str
}

// integer returns an integer reply, failing on anything else.
func (c *client) integer(a ...any) int64 {
	c.t.Helper()
	v := c.do(a...)
	if v.Kind != resp.KindInteger {
		c.t.Fatalf("%s: want an integer, got %s", render(a), v)
	}
	return v.Int
}

// ok expects +OK.
func (c *client) ok(a ...any) {
	c.t.Helper()
	c.expect("+OK", a...)
}

// info is a parsed INFO or NSINFO text: keys in order and their values.
type info struct {
	keys   []string
	values map[string]string
	text   string
}

func parseInfo(t testing.TB, text string) info {
	t.Helper()
	in := info{values: map[string]string{}, text: text}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Errorf("info line without \": \": %q", line)
			continue
		}
		in.keys = append(in.keys, k)
		in.values[k] = v
	}
	return in
}

func (in info) int(t testing.TB, key string) int64 {
	t.Helper()
	v, ok := in.values[key]
	if !ok {
		t.Fatalf("no %q in:\n%s", key, in.text)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s: %q is not an integer", key, v)
	}
	return n
}

func (c *client) nsinfo(ns string) info {
	c.t.Helper()
	return parseInfo(c.t, string(c.bulk("NSINFO", ns)))
}

// secure is sha1hex("<challenge>:<password>").
func secure(challenge, password string) string {
	sum := sha1.Sum([]byte(challenge + ":" + password))
	return hex.EncodeToString(sum[:])
}

// challenge runs AUTH SECURE CHALLENGE and returns the 16 hex characters.
func (c *client) challenge() string {
	c.t.Helper()
	v := c.do("AUTH", "SECURE", "CHALLENGE")
	if v.Kind != resp.KindSimple || len(v.Str) != 16 {
		c.t.Fatalf("AUTH SECURE CHALLENGE: want +<16 hex>, got %s", v)
	}
	if _, err := hex.DecodeString(string(v.Str)); err != nil {
		c.t.Fatalf("challenge %q is not hex", v.Str)
	}
	return string(v.Str)
}

// alive checks that the server still serves a fresh client.
func alive(t testing.TB, s *zdbtest.Server) {
	t.Helper()
	c := dial(t, s)
	c.expect("+PONG", "PING")
	c.nc.Close()
}

// le8 is a seq-mode id: 8 bytes little-endian.
func le8(n uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(n >> (8 * i))
	}
	return b
}

// quoted renders a bulk payload as resp.Value.String does.
func quoted(b []byte) string { return strconv.Quote(string(b)) }

// within checks that a unix timestamp is close to now.
func within(t testing.TB, what string, ts int64) {
	t.Helper()
	now := time.Now().Unix()
	if ts < now-10 || ts > now+10 {
		t.Errorf("%s = %d, not within 10 s of now (%d)", what, ts, now)
	}
}

// eventually polls cond for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// moveAside renames path to path+".aside" and returns the new name.
func moveAside(t testing.TB, path string) string {
	t.Helper()
	aside := path + ".aside"
	if err := os.Rename(path, aside); err != nil {
		t.Fatal(err)
	}
	return aside
}

func nsFile(root, ns, name string) string { return filepath.Join(root, ns, name) }
