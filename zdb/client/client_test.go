package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// testCtx is a context that bounds a whole test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect opens a client on addr with o (Addr filled in) and closes it at
// the end of the test.
func connect(t *testing.T, addr string, o Options) *Client {
	t.Helper()
	o.Addr = addr
	c, err := New(testCtx(t), o)
	if err != nil {
		t.Fatalf("New(%s, ns %q): %v", addr, o.Namespace, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

func mustSet(t *testing.T, c *Client, key, value []byte) {
	t.Helper()
	if _, _, err := c.Set(testCtx(t), key, value); err != nil {
		t.Fatalf("SET %q: %v", key, err)
	}
}

func TestBinaryKeysRoundTrip(t *testing.T) {
	s := zdbtest.Start(t)
	c := connect(t, s.Addr(), Options{})
	ctx := testCtx(t)

	all := make([]byte, 255)
	for i := range all {
		all[i] = byte(i)
	}
	keys := [][]byte{
		{0x00},
		{0x00, 0x00, 0x00},
		[]byte("a\x00b"),
		[]byte("\r\n"),
		[]byte("$-1\r\n"),
		all,
		bytes.Repeat([]byte{0xff}, 255),
		bytes.Repeat([]byte{0x00}, 255),
	}
	values := [][]byte{
		[]byte("v"),
		randBytes(100),
		[]byte("\r\n$3\r\nfoo\r\n"),
		{0x00},
		randBytes(1 << 20),
		randBytes(1000),
		[]byte("x"),
		randBytes(70000),
	}
	for i, k := range keys {
		id, changed, err := c.Set(ctx, k, values[i])
		if err != nil {
			t.Fatalf("Set(%x): %v", k, err)
		}
		if !changed || !bytes.Equal(id, k) {
			t.Fatalf("Set(%x) = %x, %v; want the key, true", k, id, changed)
		}
	}
	for i, k := range keys {
		got, err := c.Get(ctx, k)
		if err != nil {
			t.Fatalf("Get(%x): %v", k, err)
		}
		if !bytes.Equal(got, values[i]) {
			t.Fatalf("Get(%x): %d bytes, want %d", k, len(got), len(values[i]))
		}
		if ok, err := c.Exists(ctx, k); err != nil || !ok {
			t.Fatalf("Exists(%x) = %v, %v", k, ok, err)
		}
		if n, err := c.Length(ctx, k); err != nil || n != int64(len(values[i])) {
			t.Fatalf("Length(%x) = %d, %v; want %d", k, n, err, len(values[i]))
		}
		if st, err := c.Check(ctx, k); err != nil || st != CheckOK {
			t.Fatalf("Check(%x) = %v, %v", k, st, err)
		}
	}
	// Same payload again: nothing written, nil reply.
	id, changed, err := c.Set(ctx, all, values[5])
	if err != nil || changed || !bytes.Equal(id, all) {
		t.Fatalf("Set unchanged = %x, %v, %v; want key, false, nil", id, changed, err)
	}
	if n, err := c.DBSize(ctx); err != nil || n != int64(len(keys)) {
		t.Fatalf("DBSize = %d, %v; want %d", n, err, len(keys))
	}

	long := bytes.Repeat([]byte{'k'}, 256)
	if _, _, err := c.Set(ctx, long, []byte("v")); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("Set(256-byte key) = %v; want ErrKeyTooLarge", err)
	}
	if _, err := c.Get(ctx, long); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Get(256-byte key) = %v; want ErrInvalidKey", err)
	}
	if _, err := c.Get(ctx, []byte("missing")); err != ErrNotFound {
		t.Errorf("Get(missing) = %v; want ErrNotFound", err)
	}
	if ok, err := c.Exists(ctx, []byte("missing")); err != nil || ok {
		t.Errorf("Exists(missing) = %v, %v", ok, err)
	}
	if _, err := c.Length(ctx, []byte("missing")); err != ErrNotFound {
		t.Errorf("Length(missing) = %v; want ErrNotFound", err)
	}
	if _, err := c.Check(ctx, []byte("missing")); err != ErrNotFound {
		t.Errorf("Check(missing) = %v; want ErrNotFound", err)
	}
	if _, err := c.Get(ctx, []byte{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Get(\"\") = %v; want ErrInvalidArgument", err)
	}

	// Delete, then the key is gone.
	if err := c.Del(ctx, keys[0]); err != nil {
		t.Fatalf("Del: %v", err)
	}
	if _, err := c.Get(ctx, keys[0]); err != ErrNotFound {
		t.Errorf("Get(deleted) = %v; want ErrNotFound", err)
	}
	err = c.Del(ctx, keys[0])
	if !errors.Is(err, ErrKeyNotFound) || !errors.Is(err, ErrNotFound) {
		t.Errorf("Del(deleted) = %v; want ErrKeyNotFound matching ErrNotFound", err)
	}
	var re *ReplyError
	if !errors.As(err, &re) || re.Text != "Key not found" {
		t.Errorf("Del(deleted) = %#v; want *ReplyError{Text: \"Key not found\"}", err)
	}
}

func TestPayloadLimit(t *testing.T) {
	s := zdbtest.Start(t)
	c := connect(t, s.Addr(), Options{PoolSize: 1})
	ctx := testCtx(t)
	max := make([]byte, MaxPayload)
	max[0], max[len(max)-1] = 1, 2
	mustSet(t, c, []byte("big"), max)
	got, err := c.Get(ctx, []byte("big"))
	if err != nil || !bytes.Equal(got, max) {
		t.Fatalf("Get(8 MiB value): %d bytes, %v", len(got), err)
	}
	_, _, err = c.Set(ctx, []byte("big"), make([]byte, MaxPayload+1))
	if !errors.Is(err, ErrPayloadTooBig) {
		t.Fatalf("Set(8 MiB + 1) = %v; want ErrPayloadTooBig", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after refused payload: %v", err)
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Errorf("Stats = %+v; want the one connection kept", st)
	}
}

func TestPipeline(t *testing.T) {
	s := zdbtest.Start(t)
	c := connect(t, s.Addr(), Options{})
	ctx := testCtx(t)

	const n = 1000
	p := c.Pipeline()
	var keys [][]byte
	for i := range n {
		k := fmt.Appendf(nil, "key-%04d\x00", i)
		keys = append(keys, k)
		p.Do([]byte("SET"), k, fmt.Appendf(nil, "value %d", i))
	}
	if p.Len() != n {
		t.Fatalf("Len = %d", p.Len())
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if len(replies) != n {
		t.Fatalf("Exec returned %d replies; want %d", len(replies), n)
	}
	for i, v := range replies {
		if v.Kind != resp.KindBulk || !bytes.Equal(v.Str, keys[i]) {
			t.Fatalf("reply %d = %v; want %q", i, v, keys[i])
		}
	}
	if p.Len() != 0 {
		t.Fatalf("Len after Exec = %d", p.Len())
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Errorf("Stats = %+v; want everything on one connection", st)
	}
	if size, err := c.DBSize(ctx); err != nil || size != n {
		t.Fatalf("DBSize = %d, %v", size, err)
	}

	// GetMany and MGet (1500 keys: two MGETs), with missing keys as nil.
	want := append(keys, []byte("missing"))
	vals, err := c.GetMany(ctx, want)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	for i := range n {
		if string(vals[i]) != fmt.Sprintf("value %d", i) {
			t.Fatalf("GetMany[%d] = %q", i, vals[i])
		}
	}
	if vals[n] != nil {
		t.Fatalf("GetMany[missing] = %q; want nil", vals[n])
	}
	mkeys := append([][]byte{}, keys...)
	for i := range 500 {
		mkeys = append(mkeys, fmt.Appendf(nil, "nokey-%d", i))
	}
	mvals, err := c.MGet(ctx, mkeys...)
	if err != nil {
		t.Fatalf("MGet: %v", err)
	}
	if len(mvals) != len(mkeys) {
		t.Fatalf("MGet returned %d values; want %d", len(mvals), len(mkeys))
	}
	for i := range mkeys {
		if i < n && string(mvals[i]) != fmt.Sprintf("value %d", i) || i >= n && mvals[i] != nil {
			t.Fatalf("MGet[%d] = %q", i, mvals[i])
		}
	}

	// Error replies come back in place, without failing the batch.
	p.Do([]byte("GET"), []byte{})
	p.Do([]byte("PING"))
	p.Do([]byte("DEL"), []byte("missing"))
	replies, err = p.Exec(ctx)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if len(replies) != 3 || !errors.Is(AsError(replies[0]), ErrInvalidArgument) ||
		replies[1].Kind != resp.KindSimple || string(replies[1].Str) != "PONG" ||
		!errors.Is(AsError(replies[2]), ErrKeyNotFound) {
		t.Fatalf("replies = %v", replies)
	}

	// SetMany: large values in both directions at once.
	var bk, bv [][]byte
	for i := range 40 {
		bk = append(bk, fmt.Appendf(nil, "big-%d", i))
		bv = append(bv, randBytes(256<<10))
	}
	ids, err := c.SetMany(ctx, bk, bv)
	if err != nil {
		t.Fatalf("SetMany: %v", err)
	}
	for i := range ids {
		if !bytes.Equal(ids[i], bk[i]) {
			t.Fatalf("SetMany id %d = %q", i, ids[i])
		}
	}
	got, err := c.GetMany(ctx, bk)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	for i := range got {
		if !bytes.Equal(got[i], bv[i]) {
			t.Fatalf("GetMany(big)[%d] differs", i)
		}
	}
	// A batch with a failing command reports it as a *BatchError.
	_, err = c.SetMany(ctx, [][]byte{[]byte("ok"), bytes.Repeat([]byte("k"), 300)}, [][]byte{[]byte("1"), []byte("2")})
	var be *BatchError
	if !errors.As(err, &be) || be.Index != 1 || !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("SetMany with a bad key = %v; want BatchError at 1 matching ErrKeyTooLarge", err)
	}
}

// TestSelectPassword follows the spec's worked example 4.
func TestSelectPassword(t *testing.T) {
	s := zdbtest.Start(t, "--admin", "pw")
	ctx := testCtx(t)
	user := connect(t, s.Addr(), Options{})
	if err := user.NSNew(ctx, "x"); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("NSNEW before AUTH = %v; want ErrPermissionDenied", err)
	}
	admin := connect(t, s.Addr(), Options{AdminPassword: "pw"})
	if err := admin.NSNew(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if err := admin.NSSet(ctx, "u", "password", "p"); err != nil {
		t.Fatal(err)
	}

	// Public with a password: read-only without it.
	ro := connect(t, s.Addr(), Options{Namespace: "u"})
	if _, _, err := ro.Set(ctx, []byte("k"), []byte("v")); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("SET on public namespace without password = %v; want ErrReadOnly", err)
	}
	rw := connect(t, s.Addr(), Options{Namespace: "u", Password: "p"})
	mustSet(t, rw, []byte("k"), []byte("v"))
	if v, err := ro.Get(ctx, []byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("GET read-only = %q, %v", v, err)
	}
	sec := connect(t, s.Addr(), Options{Namespace: "u", Password: "p", Secure: true})
	mustSet(t, sec, []byte("k2"), []byte("v2"))
	if err := ro.Flush(ctx); !errors.Is(err, ErrFlushDenied) {
		t.Fatalf("FLUSH public = %v; want ErrFlushDenied", err)
	}

	// Private.
	if err := admin.NSSet(ctx, "u", "public", "0"); err != nil {
		t.Fatal(err)
	}
	const wrong = "wr0ng-Secret-42"
	for _, tc := range []struct {
		o    Options
		want error
	}{
		{Options{Namespace: "u"}, ErrProtectedPrivate},
		{Options{Namespace: "u", Password: wrong}, ErrAccessDenied},
		{Options{Namespace: "u", Password: wrong, Secure: true}, ErrAccessDenied},
		{Options{Namespace: "nope"}, ErrNamespaceNotFound},
	} {
		tc.o.Addr = s.Addr()
		_, err := New(ctx, tc.o)
		if !errors.Is(err, tc.want) {
			t.Errorf("New(%+v) = %v; want %v", tc.o.Namespace, err, tc.want)
			continue
		}
		var oe *OpError
		if !errors.As(err, &oe) || oe.Op != "SELECT" || oe.Addr != s.Addr() {
			t.Errorf("New error %#v; want an *OpError for SELECT on %s", err, s.Addr())
		}
		if strings.Contains(err.Error(), wrong) {
			t.Errorf("error %q reveals the password", err)
		}
	}
	for _, o := range []Options{{Namespace: "u", Password: "p"}, {Namespace: "u", Password: "p", Secure: true}} {
		c := connect(t, s.Addr(), o)
		mustSet(t, c, []byte("k3"), []byte("v3"))
	}
	if err := rw.Flush(ctx); err != nil {
		t.Fatalf("FLUSH private with password: %v", err)
	}
	if n, err := rw.DBSize(ctx); err != nil || n != 0 {
		t.Fatalf("DBSize after FLUSH = %d, %v", n, err)
	}
	if _, err := rw.Get(ctx, []byte("k")); err != ErrNotFound {
		t.Fatalf("GET after FLUSH = %v; want ErrNotFound", err)
	}
}

func TestAdminAuth(t *testing.T) {
	s := zdbtest.Start(t, "--admin", "secret")
	ctx := testCtx(t)
	const wrong = "hunter2-Wrong"
	_, err := New(ctx, Options{Addr: s.Addr(), AdminPassword: wrong})
	if !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("New with a wrong admin password = %v; want ErrAccessDenied", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Fatalf("error %q reveals the password", err)
	}
	admin := connect(t, s.Addr(), Options{AdminPassword: "secret", Namespace: "default"})
	if err := admin.NSNew(ctx, "adm"); err != nil {
		t.Fatalf("NSNEW as admin: %v", err)
	}
	info, err := admin.NSInfo(ctx, "adm")
	if err != nil {
		t.Fatal(err)
	}
	if info["name"] != "adm" || info["data_path"] == "" {
		t.Errorf("admin NSINFO = %v; want name and data_path", info)
	}
	// Admin and namespace selection together, on every pooled connection.
	both := connect(t, s.Addr(), Options{AdminPassword: "secret", Namespace: "adm", PoolSize: 3})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if _, _, err := both.Set(ctx, fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
				t.Error(err)
			}
			if err := both.NSJump(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n, err := both.DBSize(ctx); err != nil || n != 6 {
		t.Errorf("DBSize on adm = %d, %v", n, err)
	}

	user := connect(t, s.Addr(), Options{})
	info, err = user.NSInfo(ctx, "adm")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info["data_path"]; ok || info["entries"] != "6" {
		t.Errorf("user NSINFO = %v; want entries 6 and no paths", info)
	}
	// The raw protocol: a challenge is used up by one AUTH SECURE.
	v, err := user.Do(ctx, []byte("AUTH"), []byte("SECURE"), []byte("CHALLENGE"))
	if err != nil || v.Kind != resp.KindSimple || len(v.Str) != 16 {
		t.Fatalf("AUTH SECURE CHALLENGE = %v, %v", v, err)
	}
}

func TestProtectedDefault(t *testing.T) {
	s := zdbtest.Start(t, "--admin", "pw", "--protect")
	ctx := testCtx(t)
	ro := connect(t, s.Addr(), Options{})
	if _, _, err := ro.Set(ctx, []byte("k"), []byte("v")); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("SET on protected default = %v; want ErrReadOnly", err)
	}
	for _, o := range []Options{{Password: "pw"}, {Namespace: "default", Password: "pw", Secure: true}} {
		rw := connect(t, s.Addr(), o)
		mustSet(t, rw, []byte("k"), []byte("v"))
	}
}

func TestTypedErrors(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	c := connect(t, s.Addr(), Options{})
	for _, ns := range []string{"w", "m", "f"} {
		if err := c.NSNew(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s = %v; want %v", what, err, want)
		}
	}
	check("NSNEW existing", c.NSNew(ctx, "w"), ErrNamespaceExists)
	check("NSNEW default", c.NSNew(ctx, "default"), ErrNameNotAllowed)
	check("NSNEW a/b", c.NSNew(ctx, "a/b"), ErrNameNotAllowed)
	_, err := c.NSInfo(ctx, "nope")
	check("NSINFO missing", err, ErrNamespaceNotFound)
	check("NSDEL missing", c.NSDel(ctx, "nope"), ErrNamespaceNotFound)
	check("NSDEL default", c.NSDel(ctx, "default"), ErrDeleteDefault)
	check("NSSET bad property", c.NSSet(ctx, "w", "colour", "blue"), ErrInvalidProperty)
	check("NSSET default maxsize", c.NSSet(ctx, "default", "maxsize", "10"), ErrUpdateDefault)
	check("NSSET bad mode", c.NSSet(ctx, "w", "mode", "fast"), ErrInvalidMode)
	_, _, err = c.Scan(ctx, nil)
	check("SCAN empty", err, ErrNoMoreData)
	_, _, err = c.Scan(ctx, []byte("not a cursor"))
	check("SCAN bad cursor", err, ErrInvalidCursor)
	v, err := c.Do(ctx, []byte("FROBNICATE"))
	check("unknown command", err, ErrCommandNotSupported)
	if v.Kind != resp.KindError {
		t.Errorf("Do(unknown) value = %v; want an error value", v)
	}
	_, err = c.Do(ctx, []byte("SET"), []byte("k"))
	check("SET k", err, ErrUnexpectedArgs)

	// Worm: write once.
	check("NSSET worm", c.NSSet(ctx, "w", "worm", "1"), nil)
	w := connect(t, s.Addr(), Options{Namespace: "w"})
	mustSet(t, w, []byte("k"), []byte("v1"))
	_, _, err = w.Set(ctx, []byte("k"), []byte("v2"))
	check("SET in worm", err, ErrWorm)
	err = w.Del(ctx, []byte("k"))
	check("DEL in worm", err, ErrWorm)
	check("DEL in worm", err, ErrWormDelete)
	if errors.Is(err, ErrKeyNotFound) || errors.Is(ErrWorm, ErrWormDelete) {
		t.Errorf("worm errors match too much")
	}

	// Maxsize.
	check("NSSET maxsize", c.NSSet(ctx, "m", "maxsize", "10"), nil)
	m := connect(t, s.Addr(), Options{Namespace: "m"})
	mustSet(t, m, []byte("a"), []byte("12345"))
	_, _, err = m.Set(ctx, []byte("b"), []byte("123456"))
	check("SET over maxsize", err, ErrNoSpace)

	// Frozen and locked.
	f := connect(t, s.Addr(), Options{Namespace: "f"})
	mustSet(t, f, []byte("a"), []byte("1"))
	check("NSSET lock", c.NSSet(ctx, "f", "lock", "1"), nil)
	_, _, err = f.Set(ctx, []byte("b"), []byte("2"))
	check("SET locked", err, ErrLocked)
	if v, err := f.Get(ctx, []byte("a")); err != nil || string(v) != "1" {
		t.Errorf("GET locked = %q, %v", v, err)
	}
	check("NSSET freeze", c.NSSet(ctx, "f", "freeze", "1"), nil)
	_, err = f.Get(ctx, []byte("a"))
	check("GET frozen", err, ErrFrozen)
	check("NSSET freeze 0", c.NSSet(ctx, "f", "freeze", "0"), nil)
	mustSet(t, f, []byte("b"), []byte("2"))

	// Sentinels against each other.
	if errors.Is(ErrReadOnly, ErrLocked) || !errors.Is(&ReplyError{Text: "Namespace is in read-only mode"}, ErrReadOnly) {
		t.Errorf("sentinel matching by text is wrong")
	}
	if errors.Is(ErrNotFound, ErrKeyNotFound) || !errors.Is(fmt.Errorf("w: %w", ErrKeyNotFound), ErrNotFound) {
		t.Errorf("ErrNotFound matching is wrong")
	}
}

// TestScanHistory follows the spec's worked example 3.
func TestScanHistory(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	admin := connect(t, s.Addr(), Options{})
	if err := admin.NSNew(ctx, "sc"); err != nil {
		t.Fatal(err)
	}
	c := connect(t, s.Addr(), Options{Namespace: "sc"})
	before := time.Now().Add(-2 * time.Second)
	mustSet(t, c, []byte("a"), []byte("1"))
	mustSet(t, c, []byte("b"), []byte("22"))
	mustSet(t, c, []byte("a"), []byte("333"))

	cur, entries, err := c.Scan(ctx, nil)
	if err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	// Spec example 3: keylen 1, index file 0, payload 3, entry offset 0x63.
	if len(cur) != 17 || !bytes.Equal(cur[:13], []byte{1, 0, 0, 0, 0, 3, 0, 0, 0, 0x63, 0, 0, 0}) {
		t.Errorf("SCAN cursor = %x; want 01|00000000|03000000|63000000|crc", cur)
	}
	if len(entries) != 2 || string(entries[0].Key) != "b" || entries[0].Size != 2 ||
		string(entries[1].Key) != "a" || entries[1].Size != 3 {
		t.Fatalf("SCAN entries = %+v; want b(2), a(3)", entries)
	}
	if entries[0].Timestamp.Before(before) || entries[0].Timestamp.After(time.Now().Add(2*time.Second)) {
		t.Errorf("SCAN timestamp %v is not now", entries[0].Timestamp)
	}
	if _, _, err := c.Scan(ctx, cur); !errors.Is(err, ErrNoMoreData) {
		t.Errorf("SCAN past the end = %v; want ErrNoMoreData", err)
	}
	_, rentries, err := c.RScan(ctx, nil)
	if err != nil || len(rentries) != 2 || string(rentries[0].Key) != "a" || string(rentries[1].Key) != "b" {
		t.Errorf("RSCAN = %+v, %v; want a, b", rentries, err)
	}
	var keys []string
	for e, err := range c.ScanAll(ctx) {
		if err != nil {
			t.Fatalf("ScanAll: %v", err)
		}
		keys = append(keys, string(e.Key))
	}
	var rkeys []string
	for e, err := range c.RScanAll(ctx) {
		if err != nil {
			t.Fatalf("RScanAll: %v", err)
		}
		rkeys = append(rkeys, string(e.Key))
	}
	if strings.Join(keys, ",") != "b,a" || strings.Join(rkeys, ",") != "a,b" {
		t.Errorf("ScanAll = %v, RScanAll = %v", keys, rkeys)
	}
	kc, err := c.KeyCur(ctx, []byte("b"))
	if err != nil {
		t.Fatalf("KEYCUR: %v", err)
	}
	if _, after, err := c.Scan(ctx, kc); err != nil || len(after) != 1 || string(after[0].Key) != "a" {
		t.Errorf("SCAN after KEYCUR b = %+v, %v; want a", after, err)
	}
	if _, err := c.KeyCur(ctx, []byte("zz")); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("KEYCUR missing = %v", err)
	}

	h, err := c.History(ctx, []byte("a"), nil)
	if err != nil {
		t.Fatalf("HISTORY: %v", err)
	}
	if string(h.Value) != "333" || !bytes.Equal(h.Prev, []byte{0, 0, 0, 0, 0x1d, 0, 0, 0}) {
		t.Fatalf("HISTORY a = %+v; want 333 and ekey 00000000|1d000000", h)
	}
	h2, err := c.History(ctx, []byte("a"), h.Prev)
	if err != nil {
		t.Fatalf("HISTORY a ekey: %v", err)
	}
	if string(h2.Value) != "1" || h2.Prev != nil || h2.Timestamp.Before(before) {
		t.Fatalf("HISTORY a (previous) = %+v; want 1 and no previous", h2)
	}
	if _, err := c.History(ctx, []byte("a"), make([]byte, 8)); !errors.Is(err, ErrNoMoreHistory) {
		t.Errorf("HISTORY zero ekey = %v; want ErrNoMoreHistory", err)
	}
	if _, err := c.History(ctx, []byte("zz"), nil); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("HISTORY missing = %v; want ErrKeyNotFound", err)
	}
	kt, err := c.KeyTime(ctx, []byte("a"))
	if err != nil || kt.Before(before) {
		t.Errorf("KEYTIME = %v, %v", kt, err)
	}
}

func TestServerCommands(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	c := connect(t, s.Addr(), Options{})
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	st, err := c.Time(ctx)
	if err != nil || st.Sub(now).Abs() > 5*time.Second {
		t.Errorf("TIME = %v, %v; want about %v", st, err, now)
	}
	info, err := c.Info(ctx)
	if err != nil || info["sequential_key_size"] != "8" {
		t.Errorf("INFO sequential_key_size = %q, %v", info["sequential_key_size"], err)
	}
	if err := c.NSNew(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	names, err := c.NSList(ctx)
	if err != nil || len(names) != 2 || names[0] != "default" || names[1] != "n1" {
		t.Errorf("NSLIST = %v, %v; want [default n1]", names, err)
	}
	ni, err := c.NSInfo(ctx, "n1")
	if err != nil || ni["name"] != "n1" || ni["mode"] != "userkey" || ni["entries"] != "0" || ni["public"] != "yes" {
		t.Errorf("NSINFO n1 = %v, %v", ni, err)
	}

	n1 := connect(t, s.Addr(), Options{Namespace: "n1"})
	mustSet(t, n1, []byte("first"), []byte("hello"))
	e, err := n1.DataRaw(ctx, 0, 28)
	if err != nil {
		t.Fatalf("DATA RAW 0 28: %v", err)
	}
	if string(e.Key) != "first" || string(e.Payload) != "hello" || e.CRC != 0xdf03cd79 || e.Flags != 0 {
		t.Errorf("DATA RAW = %+v; want key first, payload hello, crc 0xdf03cd79", e)
	}
	if _, err := n1.DataRaw(ctx, 0, 1<<20); !errors.Is(err, ErrEOF) {
		t.Errorf("DATA RAW past the end = %v; want ErrEOF", err)
	}
	if _, err := n1.IndexDirty(ctx); err != nil {
		t.Errorf("INDEX DIRTY: %v", err)
	}
	if err := n1.IndexDirtyReset(ctx); err != nil {
		t.Errorf("INDEX DIRTY RESET: %v", err)
	}
	if err := n1.NSJump(ctx); err != nil {
		t.Errorf("NSJUMP: %v", err)
	}
	mustSet(t, n1, []byte("second"), []byte("x"))
	if dirty, err := n1.IndexDirty(ctx); err != nil || len(dirty) == 0 {
		t.Errorf("INDEX DIRTY after a write = %v, %v; want a file id", dirty, err)
	}
	if err := c.NSDel(ctx, "n1"); err != nil {
		t.Errorf("NSDEL: %v", err)
	}
}

// TestStaleConnection checks that a pooled connection the server closed
// (NSDEL disconnects the namespace's clients) is not handed out again.
func TestStaleConnection(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	admin := connect(t, s.Addr(), Options{})
	if err := admin.NSNew(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	c := connect(t, s.Addr(), Options{Namespace: "gone", PoolSize: 1})
	mustSet(t, c, []byte("k"), []byte("v"))
	if err := admin.NSDel(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := admin.NSNew(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the server close the old connection, if it does
	// The server either closed the connection at NSDEL (the pool notices)
	// or answers its next command with ErrNamespaceGone (the pool drops
	// it then).
	_, err := c.Get(ctx, []byte("k"))
	if err != ErrNotFound && !errors.Is(err, ErrNamespaceGone) {
		t.Fatalf("GET on the recreated namespace = %v; want ErrNotFound or ErrNamespaceGone", err)
	}
	if _, err := c.Get(ctx, []byte("k")); err != ErrNotFound {
		t.Fatalf("GET on the recreated namespace = %v; want ErrNotFound", err)
	}
	if st := c.Stats(); st.Dials != 2 || st.Discards != 1 {
		t.Errorf("Stats = %+v; want the closed connection replaced", st)
	}
}

func TestPoolConcurrency(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	const poolSize, workers, iters = 4, 16, 100
	c := connect(t, s.Addr(), Options{PoolSize: poolSize})
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range iters {
				k := fmt.Appendf(nil, "g%d-%d", g, i)
				v := fmt.Appendf(nil, "value of %s", k)
				if _, _, err := c.Set(ctx, k, v); err != nil {
					t.Error(err)
					return
				}
				got, err := c.Get(ctx, k)
				if err != nil || !bytes.Equal(got, v) {
					t.Errorf("Get(%s) = %q, %v", k, got, err)
					return
				}
				if i%10 == 0 {
					p := c.Pipeline()
					p.Do([]byte("EXISTS"), k)
					p.Do([]byte("LENGTH"), k)
					r, err := p.Exec(ctx)
					if err != nil || r[0].Int != 1 || r[1].Int != int64(len(v)) {
						t.Errorf("pipeline = %v, %v", r, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if n, err := c.DBSize(ctx); err != nil || n != workers*iters {
		t.Errorf("DBSize = %d, %v; want %d", n, err, workers*iters)
	}
	st := c.Stats()
	if st.Dials > poolSize || st.Discards != 0 || st.InUse != 0 || st.Idle != int(st.Dials) {
		t.Errorf("Stats = %+v; want at most %d connections, all idle and reused", st, poolSize)
	}
}

func TestContext(t *testing.T) {
	s := zdbtest.Start(t)
	c := connect(t, s.Addr(), Options{PoolSize: 1})

	// Already cancelled: fails at once, no connection is touched.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context = %v", err)
	}

	// A deadline interrupts a blocked command (WAIT blocks server-side).
	// The WAIT timeouts are short because a server shutting down waits for
	// abandoned WAITs to time out.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err := c.Wait(ctx, "SET", time.Second)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past the deadline = %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("Wait returned after %v", d)
	}
	var oe *OpError
	if !errors.As(err, &oe) || oe.Op != "WAIT" {
		t.Errorf("error %#v; want an *OpError for WAIT", err)
	}

	// Cancellation without a deadline interrupts too.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if _, err := c.Wait(ctx, "SET", time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait cancelled = %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("cancelled Wait returned after %v", d)
	}

	// The interrupted connections were dropped; the client still works.
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping after interrupted commands: %v", err)
	}
	if st := c.Stats(); st.Discards < 2 {
		t.Errorf("Stats = %+v; want the interrupted connections discarded", st)
	}

	// Waiting for a connection from a full pool honours the context.
	held := make(chan error, 1)
	hctx, hcancel := context.WithCancel(context.Background())
	go func() {
		_, err := c.Wait(hctx, "*", time.Second)
		held <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = c.Ping(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping on a busy pool = %v; want context.DeadlineExceeded", err)
	}
	hcancel()
	if err := <-held; !errors.Is(err, context.Canceled) {
		t.Errorf("held Wait = %v", err)
	}
}

func TestWait(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	c := connect(t, s.Addr(), Options{})
	got := make(chan string, 1)
	go func() {
		name, err := c.Wait(ctx, "SET", 5*time.Second)
		if err != nil {
			name = err.Error()
		}
		got <- name
	}()
	time.Sleep(100 * time.Millisecond)
	other := connect(t, s.Addr(), Options{})
	mustSet(t, other, []byte("k"), []byte("v"))
	select {
	case name := <-got:
		if name != "SET" {
			t.Errorf("Wait = %q; want SET", name)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Wait did not return after a SET")
	}
	if _, err := c.Wait(ctx, "DEL", 100*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("Wait with nothing happening = %v; want ErrTimeout", err)
	}
}

func TestServerKilled(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	addr := s.Addr()
	c := connect(t, addr, Options{})
	mustSet(t, c, []byte("k"), []byte("survives"))

	s.Kill()
	_, err := c.Get(ctx, []byte("k"))
	var oe *OpError
	if !errors.As(err, &oe) || oe.Op != "GET" || oe.Addr != addr {
		t.Fatalf("GET on a killed server = %#v; want an *OpError for GET on %s", err, addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET on a killed server = %v; want connection refused", err)
	}
	if errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q is not clear", err)
	}

	// New fails fast on a dead address.
	start := time.Now()
	if _, err := New(ctx, Options{Addr: addr}); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("New on a dead address = %v after %v", err, time.Since(start))
	}

	s.Restart() // same files, new port
	c2 := connect(t, s.Addr(), Options{})
	if v, err := c2.Get(ctx, []byte("k")); err != nil || string(v) != "survives" {
		t.Fatalf("GET after restart = %q, %v", v, err)
	}
}

// TestPipelineDoRef: arguments sent in place (DoRef) arrive byte for
// byte, mixed with small and copied ones, at the size limits, and the
// pipeline is reusable after Exec and after a refused batch.
func TestPipelineDoRef(t *testing.T) {
	s := zdbtest.Start(t)
	c := connect(t, s.Addr(), Options{})
	ctx := testCtx(t)
	sizes := []int{0, 1, refMin - 1, refMin, refMin + 1, 64 << 10, 1 << 20, MaxPayload}
	p := c.Pipeline()
	for round := range 2 {
		var keys, vals [][]byte
		for i, n := range sizes {
			k := fmt.Appendf(nil, "ref-%d-%d", round, i)
			v := randBytes(n)
			keys, vals = append(keys, k), append(vals, v)
			if i%2 == 0 {
				p.DoRef([]byte("SET"), k, v)
			} else {
				p.Do([]byte("SET"), k, v)
			}
		}
		replies, err := p.Exec(ctx)
		if err != nil {
			t.Fatalf("round %d: Exec: %v", round, err)
		}
		for i, r := range replies {
			if err := AsError(r); err != nil {
				t.Fatalf("round %d: SET of %d bytes: %v", round, sizes[i], err)
			}
		}
		got, err := c.GetMany(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if !bytes.Equal(got[i], vals[i]) {
				t.Fatalf("round %d: value of %d bytes came back as %d bytes, or different", round, sizes[i], len(got[i]))
			}
		}
	}
	// Over the limit: nothing is sent, and the pipeline works afterwards.
	p.DoRef([]byte("SET"), []byte("too-big"), make([]byte, MaxPayload+1))
	if _, err := p.Exec(ctx); err == nil {
		t.Fatal("an argument over MaxPayload was accepted")
	}
	p.DoRef([]byte("SET"), []byte("after"), make([]byte, refMin))
	if replies, err := p.Exec(ctx); err != nil || AsError(replies[0]) != nil {
		t.Fatalf("after a refused batch: %v %v", replies, err)
	}
	if ok, err := c.Exists(ctx, []byte("too-big")); err != nil || ok {
		t.Fatalf("refused key exists=%v err=%v", ok, err)
	}
}

func TestServerKilledMidPipeline(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	c := connect(t, s.Addr(), Options{PoolSize: 2})
	var bk, bv [][]byte
	for i := range 200 {
		bk = append(bk, fmt.Appendf(nil, "k%d", i))
		bv = append(bv, randBytes(64<<10))
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := c.SetMany(ctx, bk, bv); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	s.Kill()
	select {
	case err := <-done:
		var oe *OpError
		if !errors.As(err, &oe) || oe.Op != "SET+pipeline" {
			t.Errorf("SetMany on a killed server = %#v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetMany did not fail after the server died")
	}
}

func TestSeqMode(t *testing.T) {
	s := zdbtest.Start(t)
	ctx := testCtx(t)
	admin := connect(t, s.Addr(), Options{})
	if err := admin.NSNew(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if err := admin.NSSet(ctx, "s", "mode", "seq"); err != nil {
		t.Fatal(err)
	}
	c := connect(t, s.Addr(), Options{Namespace: "s"})
	for i, want := range []uint64{0, 1} {
		id, err := c.SetSeq(ctx, []byte{'a' + byte(i)})
		if err != nil || id != want {
			t.Fatalf("SetSeq #%d = %d, %v; want %d", i, id, err, want)
		}
	}
	if changed, err := c.UpdateSeq(ctx, 0, []byte("c")); err != nil || !changed {
		t.Fatalf("UpdateSeq(0) = %v, %v", changed, err)
	}
	if changed, err := c.UpdateSeq(ctx, 0, []byte("c")); err != nil || changed {
		t.Fatalf("UpdateSeq(0) unchanged = %v, %v", changed, err)
	}
	if id, err := c.SetSeq(ctx, []byte("d")); err != nil || id != 3 {
		t.Fatalf("SetSeq after an update = %d, %v; want 3 (ids skip)", id, err)
	}
	if _, err := c.UpdateSeq(ctx, 9, []byte("x")); !errors.Is(err, ErrOnlyUpdate) {
		t.Fatalf("UpdateSeq(9) = %v; want ErrOnlyUpdate", err)
	}
	for id, want := range map[uint64]string{0: "c", 1: "b", 3: "d"} {
		if v, err := c.GetSeq(ctx, id); err != nil || string(v) != want {
			t.Errorf("GetSeq(%d) = %q, %v; want %q", id, v, err, want)
		}
	}
	if _, err := c.Get(ctx, make([]byte, 4)); err != ErrNotFound {
		t.Errorf("GET 4-byte key in seq mode = %v; want ErrNotFound", err)
	}
	if _, err := c.GetSeq(ctx, 99); err != ErrNotFound {
		t.Errorf("GetSeq(99) = %v; want ErrNotFound", err)
	}
	if !bytes.Equal(EncodeID(1), []byte{1, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("EncodeID(1) = %x", EncodeID(1))
	}
	if id, err := DecodeID(EncodeID(0x0102030405060708)); err != nil || id != 0x0102030405060708 {
		t.Errorf("DecodeID round trip = %x, %v", id, err)
	}
	if _, err := DecodeID([]byte{1, 2}); err == nil {
		t.Errorf("DecodeID(2 bytes) succeeded")
	}
	if ni, err := admin.NSInfo(ctx, "s"); err != nil || ni["mode"] != "sequential" {
		t.Errorf("NSINFO s mode = %q, %v", ni["mode"], err)
	}
	// Pipelined appends get consecutive ids.
	ids, err := c.SetMany(ctx, [][]byte{{}, {}, {}}, [][]byte{[]byte("e"), []byte("f"), []byte("g")})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if n, _ := DecodeID(id); n != uint64(4+i) {
			t.Errorf("SetMany seq id %d = %x; want %d", i, id, 4+i)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "zdb.sock")
	s := zdbtest.Start(t, "--socket", sock, "--dualnet")
	_ = s
	ctx := testCtx(t)
	for _, addr := range []string{"unix://" + sock, sock} {
		c := connect(t, addr, Options{})
		if err := c.Ping(ctx); err != nil {
			t.Errorf("Ping over %s: %v", addr, err)
		}
		mustSet(t, c, []byte("k"), []byte(addr))
	}
}

func TestOptions(t *testing.T) {
	ctx := testCtx(t)
	for _, o := range []Options{
		{},
		{Addr: "no-port"},
		{Addr: "unix://"},
		{Addr: "127.0.0.1:1", Namespace: strings.Repeat("n", 129)},
		{Addr: "127.0.0.1:1", Password: strings.Repeat("p", 256)},
		{Addr: "127.0.0.1:1", PoolSize: -1},
	} {
		if _, err := New(ctx, o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	if got := SecureHash("0123456789abcdef", "pw"); len(got) != 40 {
		t.Errorf("SecureHash = %q", got)
	}
}

func TestClose(t *testing.T) {
	s := zdbtest.Start(t)
	c := connect(t, s.Addr(), Options{})
	ctx := testCtx(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after Close = %v; want ErrClosed", err)
	}
	if _, err := c.Pipeline().Exec(ctx); err != nil {
		t.Fatalf("empty Exec = %v", err)
	}
}
