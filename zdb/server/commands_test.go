package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"qss/internal/resp"
)

// zcrc is 0-db's CRC: CRC32C with initial value 0 and no final XOR (§7).
func zcrc(p []byte) uint32 {
	return ^crc32.Update(0xffffffff, crc32.MakeTable(crc32.Castagnoli), p)
}

func TestCRCHelper(t *testing.T) {
	if got := zcrc([]byte("hello")); got != 0xdf03cd79 {
		t.Fatalf("crc(hello) = %#x", got)
	}
	if got := zcrc([]byte("v1")); got != 0x141e4f07 {
		t.Fatalf("crc(v1) = %#x", got)
	}
}

// cursor builds a 17-byte SCAN cursor (§5).
func cursor(keyLen int, fileID, length, offset, crc uint32) []byte {
	c := make([]byte, 17)
	c[0] = byte(keyLen)
	binary.LittleEndian.PutUint32(c[1:], fileID)
	binary.LittleEndian.PutUint32(c[5:], length)
	binary.LittleEndian.PutUint32(c[9:], offset)
	binary.LittleEndian.PutUint32(c[13:], crc)
	return c
}

// scanReply checks the shape of a SCAN/RSCAN reply and returns its cursor
// and keys.
func scanReply(t *testing.T, v resp.Value) ([]byte, []string) {
	t.Helper()
	if v.Kind != resp.KindArray || len(v.Array) != 2 {
		t.Fatalf("scan reply: want *2, got %s", v)
	}
	cur := v.Array[0]
	if cur.Kind != resp.KindBulk || len(cur.Str) != 17 {
		t.Fatalf("scan cursor: want $17, got %s", cur)
	}
	list := v.Array[1]
	if list.Kind != resp.KindArray {
		t.Fatalf("scan entries: want an array, got %s", list)
	}
	var keys []string
	for _, e := range list.Array {
		if e.Kind != resp.KindArray || len(e.Array) != 3 || e.Array[0].Kind != resp.KindBulk ||
			e.Array[1].Kind != resp.KindInteger || e.Array[2].Kind != resp.KindInteger {
			t.Fatalf("scan entry: want *3 [$key, :len, :ts], got %s", e)
		}
		keys = append(keys, string(e.Array[0].Str))
	}
	return cur.Str, keys
}

func TestPING(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	t.Run("PING", func(t *testing.T) { with(t, c); c.expect("+PONG", "PING") })
	t.Run("PING/lowercase", func(t *testing.T) { with(t, c); c.expect("+PONG", "ping") })
}

func TestTIME(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	v := c.do("TIME")
	if v.Kind != resp.KindArray || len(v.Array) != 2 || v.Array[0].Kind != resp.KindBulk || v.Array[1].Kind != resp.KindBulk {
		t.Fatalf("TIME: want an array of two bulk strings, got %s", v)
	}
	sec, err1 := strconv.ParseInt(string(v.Array[0].Str), 10, 64)
	usec, err2 := strconv.ParseInt(string(v.Array[1].Str), 10, 64)
	if err1 != nil || err2 != nil || usec < 0 || usec >= 1e6 {
		t.Fatalf("TIME: bad values %s", v)
	}
	within(t, "TIME seconds", sec)
}

func TestSET(t *testing.T) {
	t.Parallel()
	t.Run("SET/returns-key", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k1"`, "SET", "k1", "v1")
		c.expect(`"v1"`, "GET", "k1")
	})
	t.Run("SET/binary-key-and-value", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		key := []byte{0, 1, 0xff, '\r', '\n', 0}
		val := []byte("\x00\r\n$-1\r\n\xff")
		c.expect(quoted(key), "SET", key, val)
		c.expect(quoted(val), "GET", key)
		long := bytes.Repeat([]byte{0xab}, 255)
		c.expect(quoted(long), "SET", long, "x")
		c.expect(`"x"`, "GET", long)
	})
	t.Run("SET/identical-payload-nil-nothing-written", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k"`, "SET", "k", "same")
		before := c.nsinfo("default")
		c.expect("$-1", "SET", "k", "same")
		after := c.nsinfo("default")
		for _, f := range []string{"data_current_offset", "index_size_bytes", "next_internal_id", "entries"} {
			if before.values[f] != after.values[f] {
				t.Errorf("identical SET changed %s: %s -> %s", f, before.values[f], after.values[f])
			}
		}
		c.expect(`"k"`, "SET", "k", "other")
		c.expect(`"other"`, "GET", "k")
	})
	t.Run("SETX/alias", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"kx"`, "SETX", "kx", "vx")
		c.expect("$-1", "SETX", "kx", "vx")
		c.expect(`"vx"`, "GET", "kx")
	})
	t.Run("SET/argument-count", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expectErr("Unexpected arguments", "SET", "k")
		c.expectErr("Unexpected arguments", "SET")
		c.expectErr("Unexpected arguments", "SET", "k", "v", "1", "2")
	})
	t.Run("SET/ts-admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "SET", "k", "v", "1234")
		c.expect("$-1", "GET", "k")
		c.ok("AUTH", "pw")
		c.expect(`"k"`, "SET", "k", "v", "1234")
		c.expect(":1234", "KEYTIME", "k")
	})
	t.Run("SET/ts-when-everyone-is-admin", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k"`, "SET", "k", "v", "1000000")
		c.expect(":1000000", "KEYTIME", "k")
	})
	t.Run("SET/empty-value", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k"`, "SET", "k", "")
		c.expect(`""`, "GET", "k")
		c.expect(":0", "LENGTH", "k")
	})
	t.Run("SET/errors-in-order", testSETErrors)
}

// testSETErrors checks each SET error of §3, and for each pair of
// neighbouring conditions that the earlier one wins.
func testSETErrors(t *testing.T) {
	t.Parallel()
	srv, adm := start(t) // every client is admin without --admin
	long := strings.Repeat("k", 256)

	// ro: password + public, entered without the password: read-only.
	adm.ok("NSNEW", "ro")
	adm.ok("NSSET", "ro", "password", "p")
	ro := dial(t, srv)
	ro.ok("SELECT", "ro")

	t.Run("Key-too-large", func(t *testing.T) {
		with(t, adm)
		adm.expectErr("Key too large", "SET", long, "v")
	})
	t.Run("Key-too-large-before-read-only", func(t *testing.T) {
		with(t, ro)
		ro.expectErr("Key too large", "SET", long, "v")
	})
	t.Run("read-only", func(t *testing.T) {
		with(t, ro)
		ro.expectErr("Namespace is in read-only mode", "SET", "k", "v")
	})
	t.Run("read-only-before-frozen", func(t *testing.T) {
		with(t, ro, adm)
		adm.ok("NSSET", "ro", "freeze", "1")
		ro.expectErr("Namespace is in read-only mode", "SET", "k", "v")
		adm.ok("NSSET", "ro", "freeze", "0")
	})

	adm.ok("NSNEW", "w")
	adm.ok("NSSET", "w", "worm", "1")
	w := dial(t, srv)
	w.ok("SELECT", "w")
	w.expect(`"k"`, "SET", "k", "v")
	t.Run("worm", func(t *testing.T) {
		with(t, w)
		w.expectErr("Namespace is protected by worm mode", "SET", "k", "v2")
		w.expect(`"v"`, "GET", "k")
	})
	t.Run("frozen", func(t *testing.T) {
		with(t, w, adm)
		adm.ok("NSSET", "w", "freeze", "1")
		w.expectErr("Namespace is temporarily frozen (read-write disabled)", "SET", "new", "v")
	})
	t.Run("frozen-before-worm", func(t *testing.T) {
		with(t, w)
		w.expectErr("Namespace is temporarily frozen (read-write disabled)", "SET", "k", "v2")
	})
	t.Run("locked", func(t *testing.T) {
		with(t, w, adm)
		adm.ok("NSSET", "w", "lock", "1")
		w.expectErr("Namespace is temporarily locked (read-only)", "SET", "new", "v")
	})
	t.Run("locked-before-worm", func(t *testing.T) {
		with(t, w, adm)
		w.expectErr("Namespace is temporarily locked (read-only)", "SET", "k", "v2")
		adm.ok("NSSET", "w", "lock", "0")
	})
	t.Run("worm-before-no-space", func(t *testing.T) {
		with(t, w, adm)
		adm.ok("NSSET", "w", "maxsize", "2")
		w.expectErr("Namespace is protected by worm mode", "SET", "k", "much too long")
	})
	t.Run("no-space", func(t *testing.T) {
		with(t, w)
		w.expectErr("No space left on this namespace", "SET", "k2", "much too long")
	})

	adm.ok("NSNEW", "m")
	adm.ok("NSSET", "m", "maxsize", "1")
	m := dial(t, srv)
	m.ok("SELECT", "m")
	t.Run("no-space-before-key-needed", func(t *testing.T) {
		with(t, m)
		m.expectErr("No space left on this namespace", "SET", "", "xx")
	})
	t.Run("key-needed", func(t *testing.T) {
		with(t, m)
		m.expectErr("Invalid argument, key needed", "SET", "", "x")
	})

	adm.ok("NSNEW", "sq")
	adm.ok("NSSET", "sq", "mode", "seq")
	sq := dial(t, srv)
	sq.ok("SELECT", "sq")
	t.Run("only-update-authorized", func(t *testing.T) {
		with(t, sq)
		sq.expectErr("Invalid key, only update authorized", "SET", le8(0), "x")
		sq.expectErr("Invalid key, only update authorized", "SET", "abc", "x")
		sq.expect(quoted(le8(0)), "SET", "", "a")
		sq.expectErr("Invalid key, only update authorized", "SET", le8(1), "x")
	})
	t.Run("no-space-before-only-update", func(t *testing.T) {
		with(t, sq, adm)
		adm.ok("NSSET", "sq", "maxsize", "1")
		sq.expectErr("No space left on this namespace", "SET", le8(7), "xx")
	})

	t.Run("Cannot-write", func(t *testing.T) {
		// The next data file's name is taken by a directory: the rotation a
		// big write needs fails.
		s, c := start(t, "--datasize", "524288")
		if err := os.Mkdir(nsFile(s.DataDir(), "default", "d1"), 0o700); err != nil {
			t.Fatal(err)
		}
		big := bytes.Repeat([]byte("x"), 300<<10)
		c.expect(`"a"`, "SET", "a", big)
		c.expectErr("Cannot write data/index right now", "SET", "b", big)
		c.expect("$-1", "GET", "b")
		c.expect(`"c"`, "SET", "c", "small")
		c.expect(":2", "DBSIZE")
	})
	t.Run("Permission-before-Key-too-large", func(t *testing.T) {
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "SET", long, "v", "5")
		c.expectErr("Unexpected arguments", "SET", long)
	})
}

func TestGET(t *testing.T) {
	t.Parallel()
	t.Run("GET/value-missing-deleted", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect("$-1", "GET", "nope")
		c.expect(`"k"`, "SET", "k", "v")
		c.expect(`"v"`, "GET", "k")
		c.ok("DEL", "k")
		c.expect("$-1", "GET", "k")
		c.expectErr("Invalid argument", "GET", "")
		c.expectErr("Invalid key", "GET", strings.Repeat("k", 256))
		c.expectErr("Unexpected arguments", "GET")
		c.expectErr("Unexpected arguments", "GET", "a", "b")
	})
	t.Run("GET/internal-error-missing-data-file", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.expect(`"k"`, "SET", "k", "v")
		c.ok("NSJUMP")
		c.expect(`"k2"`, "SET", "k2", "v2")
		d0 := nsFile(s.DataDir(), "default", "d0")
		aside := moveAside(t, d0)
		c.expectErr("Internal Error", "GET", "k")
		c.expect(":-1", "CHECK", "k")
		c.expect(`"v2"`, "GET", "k2")
		// MGET sends its values as it reads them: the unreadable one is
		// an error in its place.
		c.expect(`["v2", -Internal Error, $-1]`, "MGET", "k2", "k", "none")
		if err := os.Rename(aside, d0); err != nil {
			t.Fatal(err)
		}
		c.expect(`"v"`, "GET", "k")
		c.expect(":1", "CHECK", "k")
	})
	t.Run("GET/internal-error-corrupt-payload", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.expect(`"k"`, "SET", "k", "hello")
		c.ok("NSJUMP")
		// d0: header 28, entry header 18, key "k", payload "hello".
		f, err := os.OpenFile(nsFile(s.DataDir(), "default", "d0"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("J"), 28+18+1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		c.expectErr("Internal Error", "GET", "k")
		c.expect(":0", "CHECK", "k")
		c.expect(":5", "LENGTH", "k")
		c.expect(":1", "EXISTS", "k")
	})
}

func TestMGET(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	c.expect(`"a"`, "SET", "a", "1")
	c.expect(`"b"`, "SET", "b", "22")
	t.Run("MGET/values-and-nils", func(t *testing.T) {
		with(t, c)
		c.expect(`["1", $-1, "22"]`, "MGET", "a", "missing", "b")
		c.expect(`["22"]`, "MGET", "b")
	})
	t.Run("MGET/deleted-is-nil", func(t *testing.T) {
		with(t, c)
		c.expect(`"d"`, "SET", "d", "x")
		c.ok("DEL", "d")
		c.expect(`[$-1, "1"]`, "MGET", "d", "a")
	})
	t.Run("MGET/no-key", func(t *testing.T) {
		with(t, c)
		c.expectErr("Invalid arguments", "MGET")
	})
	t.Run("MGET/key-too-long", func(t *testing.T) {
		with(t, c)
		c.expectErr("Invalid key", "MGET", "a", strings.Repeat("k", 256))
	})
	t.Run("MGET/1023-keys", func(t *testing.T) {
		with(t, c)
		req := []any{"MGET"}
		for i := 0; i < 1023; i++ {
			if i%2 == 0 {
				req = append(req, "a")
			} else {
				req = append(req, "zz"+strconv.Itoa(i))
			}
		}
		v := c.do(req...)
		if v.Kind != resp.KindArray || len(v.Array) != 1023 {
			t.Fatalf("MGET of 1023 keys: got %d elements (%s)", len(v.Array), v.String()[:min(80, len(v.String()))])
		}
		for i, e := range v.Array {
			want := "$-1"
			if i%2 == 0 {
				want = `"1"`
			}
			if e.String() != want {
				t.Fatalf("MGET element %d: got %s want %s", i, e, want)
			}
		}
	})
}

func TestDEL(t *testing.T) {
	t.Parallel()
	t.Run("DEL/ok-then-key-not-found", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k"`, "SET", "k", "v")
		c.ok("DEL", "k")
		c.expectErr("Key not found", "DEL", "k")
		c.expectErr("Key not found", "DEL", "never")
		c.expect(":0", "EXISTS", "k")
		c.expectErr("Invalid argument", "DEL", "")
		c.expectErr("Invalid key", "DEL", strings.Repeat("k", 256))
		c.expectErr("Unexpected arguments", "DEL")
		// a deleted key can be set again
		c.expect(`"k"`, "SET", "k", "v")
		c.expect(`"v"`, "GET", "k")
	})
	t.Run("DEL/worm", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "w")
		c.ok("NSSET", "w", "worm", "1")
		c.ok("SELECT", "w")
		c.expect(`"k"`, "SET", "k", "v")
		c.expectErr("Cannot delete a key when namespace is in worm mode", "DEL", "k")
		c.expect(`"v"`, "GET", "k")
	})
	t.Run("DEL/ts-admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.ok("SELECT", "default")
		c.expect(`"k"`, "SET", "k", "v")
		c.expectErr("Permission denied", "DEL", "k", "1234")
		c.expect(`"v"`, "GET", "k")
		c.ok("AUTH", "pw")
		c.ok("DEL", "k", "1234")
		c.expect("$-1", "GET", "k")
	})
	t.Run("DEL/persists-after-restart", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.expect(`"k"`, "SET", "k", "v")
		c.expect(`"j"`, "SET", "j", "w")
		c.ok("DEL", "k")
		s.Restart()
		c = dial(t, s)
		c.expect("$-1", "GET", "k")
		c.expect(`"w"`, "GET", "j")
		c.expect(":1", "DBSIZE")
	})
}

func TestKeyStatCommands(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	c.expect(`"k"`, "SET", "k", "hello")
	long := strings.Repeat("k", 256)
	t.Run("EXISTS", func(t *testing.T) {
		with(t, c)
		c.expect(":1", "EXISTS", "k")
		c.expect(":0", "EXISTS", "nope")
		c.expectErr("Invalid argument", "EXISTS", "")
		c.expectErr("Invalid key", "EXISTS", long)
		c.expectErr("Unexpected arguments", "EXISTS")
	})
	t.Run("CHECK", func(t *testing.T) {
		with(t, c)
		c.expect(":1", "CHECK", "k")
		c.expect("$-1", "CHECK", "nope")
		c.expectErr("Invalid argument", "CHECK", "")
		c.expectErr("Invalid key", "CHECK", long)
		c.expectErr("Unexpected arguments", "CHECK")
	})
	t.Run("LENGTH", func(t *testing.T) {
		with(t, c)
		c.expect(":5", "LENGTH", "k")
		c.expect("$-1", "LENGTH", "nope")
		c.expectErr("Invalid argument", "LENGTH", "")
		c.expectErr("Invalid key", "LENGTH", long)
		c.expectErr("Unexpected arguments", "LENGTH")
	})
	t.Run("KEYTIME", func(t *testing.T) {
		with(t, c)
		within(t, "KEYTIME", c.integer("KEYTIME", "k"))
		c.expect("$-1", "KEYTIME", "nope")
		c.expectErr("Invalid argument", "KEYTIME", "")
		c.expectErr("Invalid key", "KEYTIME", long)
		c.expectErr("Unexpected arguments", "KEYTIME")
	})
	t.Run("KEYCUR", func(t *testing.T) {
		with(t, c)
		cur := c.bulk("KEYCUR", "k")
		// first entry of i0: keylen 1, file 0, length 5, offset 29, crc.
		want := cursor(1, 0, 5, 29, zcrc([]byte("hello")))
		if !bytes.Equal(cur, want) {
			t.Errorf("KEYCUR k = %x, want %x", cur, want)
		}
		c.expectErr("Key not found", "KEYCUR", "nope")
		c.expectErr("Unexpected arguments", "KEYCUR")
	})
	t.Run("deleted-key", func(t *testing.T) {
		with(t, c)
		c.expect(`"d"`, "SET", "d", "xyz")
		c.ok("DEL", "d")
		c.expect(":0", "EXISTS", "d")
		c.expect("$-1", "CHECK", "d")
		c.expect("$-1", "LENGTH", "d")
		c.expect("$-1", "KEYTIME", "d")
		c.expectErr("Key not found", "KEYCUR", "d")
	})
}

func TestSCAN(t *testing.T) {
	t.Parallel()
	t.Run("SCAN/empty-namespace", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expectErr("No more data", "SCAN")
		c.expectErr("No more data", "SCANX")
		c.expectErr("No more data", "RSCAN")
	})
	t.Run("SCAN/forward-and-cursor", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		for _, k := range []string{"a", "b", "c"} {
			c.send("SET", k, "val-"+k)
			c.read()
		}
		cur, keys := scanReply(t, c.do("SCAN"))
		if strings.Join(keys, ",") != "a,b,c" {
			t.Fatalf("SCAN keys = %v", keys)
		}
		if !bytes.Equal(cur, c.bulk("KEYCUR", "c")) {
			t.Errorf("SCAN cursor is not the last entry of the batch")
		}
		v := c.do("SCAN")
		e := v.Array[1].Array[0]
		if e.Array[1].Int != 5 {
			t.Errorf("SCAN length of a = %d", e.Array[1].Int)
		}
		within(t, "SCAN ts", e.Array[2].Int)
		// a cursor starts after its entry
		_, keys = scanReply(t, c.do("SCAN", c.bulk("KEYCUR", "a")))
		if strings.Join(keys, ",") != "b,c" {
			t.Errorf("SCAN after a = %v", keys)
		}
		_, keys = scanReply(t, c.do("SCANX", c.bulk("KEYCUR", "b")))
		if strings.Join(keys, ",") != "c" {
			t.Errorf("SCANX after b = %v", keys)
		}
		c.expectErr("No more data", "SCAN", cur)
		// deleted keys are skipped, updated keys move to the end
		c.ok("DEL", "b")
		c.expect(`"a"`, "SET", "a", "new")
		_, keys = scanReply(t, c.do("SCAN"))
		if strings.Join(keys, ",") != "c,a" {
			t.Errorf("SCAN after DEL b, SET a = %v", keys)
		}
		c.expectErr("Unexpected arguments", "SCAN", "x", "y")
	})
	t.Run("RSCAN/backward-and-cursor", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		for _, k := range []string{"a", "b", "c"} {
			c.send("SET", k, "v")
			c.read()
		}
		cur, keys := scanReply(t, c.do("RSCAN"))
		if strings.Join(keys, ",") != "c,b,a" {
			t.Fatalf("RSCAN keys = %v", keys)
		}
		if !bytes.Equal(cur, c.bulk("KEYCUR", "a")) {
			t.Errorf("RSCAN cursor is not the last entry of the batch")
		}
		_, keys = scanReply(t, c.do("RSCAN", c.bulk("KEYCUR", "c")))
		if strings.Join(keys, ",") != "b,a" {
			t.Errorf("RSCAN before c = %v", keys)
		}
		c.expectErr("No more data", "RSCAN", cur)
	})
	t.Run("SCAN/invalid-cursor", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k"`, "SET", "k", "hello")
		good := c.bulk("KEYCUR", "k")
		c.expectErr("Invalid key format", "SCAN", "xyz")
		c.expectErr("Invalid key format", "RSCAN", "xyz")
		c.expectErr("Invalid key format", "SCAN", bytes.Repeat([]byte{0xee}, 17))
		c.expectErr("Invalid key format", "SCAN", append(good, 0))
		for i, mut := range []func(b []byte){
			func(b []byte) { b[0] = 2 },                                   // key length
			func(b []byte) { binary.LittleEndian.PutUint32(b[1:], 7) },    // file id
			func(b []byte) { binary.LittleEndian.PutUint32(b[5:], 6) },    // payload length
			func(b []byte) { binary.LittleEndian.PutUint32(b[9:], 30) },   // offset
			func(b []byte) { binary.LittleEndian.PutUint32(b[13:], 1) },   // crc
			func(b []byte) { binary.LittleEndian.PutUint32(b[9:], 9999) }, // past the end
		} {
			bad := append([]byte(nil), good...)
			mut(bad)
			t.Run(fmt.Sprint("field-", i), func(t *testing.T) {
				with(t, c)
				c.expectErr("Invalid key format", "SCAN", bad)
			})
		}
	})
	t.Run("SCAN/batches-cover-all-keys", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		const n = 2500
		var buf bytes.Buffer
		w := resp.NewWriter(&buf, 1<<16)
		for i := 0; i < n; i++ {
			w.Command([]byte("SET"), []byte(fmt.Sprintf("key%05d", i)), []byte("v"))
		}
		w.Flush()
		c.raw(buf.Bytes())
		for i := 0; i < n; i++ {
			c.read()
		}
		c.ok("NSJUMP") // the walk crosses index files
		for i := 0; i < 10; i++ {
			c.expect(quoted([]byte(fmt.Sprintf("more%d", i))), "SET", fmt.Sprintf("more%d", i), "v")
		}
		for _, reverse := range []bool{false, true} {
			cmd := "SCAN"
			if reverse {
				cmd = "RSCAN"
			}
			seen := map[string]bool{}
			var req []any
			req = append(req, cmd)
			var order []string
			for batches := 0; ; batches++ {
				if batches > n {
					t.Fatalf("%s does not end", cmd)
				}
				v := c.do(req...)
				if v.Kind == resp.KindError {
					if v.String() != "-No more data" {
						t.Fatalf("%s: %s", cmd, v)
					}
					break
				}
				cur, keys := scanReply(t, v)
				for _, k := range keys {
					if seen[k] {
						t.Fatalf("%s returned %q twice", cmd, k)
					}
					seen[k] = true
					order = append(order, k)
				}
				req = []any{cmd, cur}
			}
			if len(seen) != n+10 {
				t.Errorf("%s saw %d keys, want %d", cmd, len(seen), n+10)
			}
			first, last := order[0], order[len(order)-1]
			if !reverse && (first != "key00000" || last != "more9") || reverse && (first != "more9" || last != "key00000") {
				t.Errorf("%s order: first %s last %s", cmd, first, last)
			}
		}
	})
}

func TestHISTORY(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	c.expect(`"h"`, "SET", "h", "v1", "1000")
	c.expect(`"h"`, "SET", "h", "v2", "2000")
	c.expect(`"h"`, "SET", "h", "v3", "3000")
	t.Run("HISTORY/chain", func(t *testing.T) {
		with(t, c)
		v := c.do("HISTORY", "h")
		if v.Kind != resp.KindArray || len(v.Array) != 3 {
			t.Fatalf("HISTORY: want *3, got %s", v)
		}
		// entries of i0: h@29, h@64, h@99 (34 + 1 bytes each)
		e2 := append(le32(0), le32(64)...)
		e1 := append(le32(0), le32(29)...)
		if want := fmt.Sprintf(`[%s, "3000", "v3"]`, quoted(e2)); v.String() != want {
			t.Errorf("HISTORY h = %s, want %s", v, want)
		}
		c.expect(fmt.Sprintf(`[%s, "2000", "v2"]`, quoted(e1)), "HISTORY", "h", e2)
		c.expect(`[$-1, "1000", "v1"]`, "HISTORY", "h", e1)
	})
	t.Run("HISTORY/ts-is-bulk-decimal", func(t *testing.T) {
		with(t, c)
		c.expect(`"n"`, "SET", "n", "x")
		v := c.do("HISTORY", "n")
		if v.Array[1].Kind != resp.KindBulk {
			t.Fatalf("ts is %s, want a bulk string", v.Array[1])
		}
		ts, err := strconv.ParseInt(string(v.Array[1].Str), 10, 64)
		if err != nil || ts != c.integer("KEYTIME", "n") {
			t.Errorf("HISTORY ts %q, KEYTIME differs or not decimal", v.Array[1].Str)
		}
	})
	t.Run("HISTORY/errors", func(t *testing.T) {
		with(t, c)
		c.expectErr("Key not found", "HISTORY", "missing")
		c.expectErr("Invalid arguments", "HISTORY", "h", "short")
		c.expectErr("No more history", "HISTORY", "h", make([]byte, 8))
		c.expectErr("Unexpected arguments", "HISTORY")
	})
}

func le32(n uint32) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, n)
	return b
}

func TestDBSIZE(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	c.expect(":0", "DBSIZE")
	c.expect(`"a"`, "SET", "a", "1")
	c.expect(`"b"`, "SET", "b", "1")
	c.expect(`"a"`, "SET", "a", "2")
	c.expect(":2", "DBSIZE")
	c.ok("DEL", "a")
	c.expect(":1", "DBSIZE")
	c.ok("NSNEW", "other")
	c.ok("SELECT", "other")
	c.expect(":0", "DBSIZE")
	c.expect(":0", "DBSIZE", "x") // extra arguments ignored, as in 0-db
}

func TestINFO(t *testing.T) {
	t.Parallel()
	_, c := start(t)
	c.expect("+PONG", "PING")
	c.expectErr("Command not supported", "NOPE")
	text := string(c.bulk("INFO"))
	t.Run("INFO/sections", func(t *testing.T) {
		var sections []string
		for _, block := range strings.Split(strings.TrimRight(text, "\n"), "\n\n") {
			first, _, _ := strings.Cut(block, "\n")
			sections = append(sections, first)
		}
		if want := "# server,# clients,# internals,# stats"; strings.Join(sections, ",") != want {
			t.Errorf("INFO sections %q, want %q\n%s", sections, want, text)
		}
	})
	in := parseInfo(t, text)
	t.Run("INFO/server", func(t *testing.T) {
		for _, k := range []string{"server_name", "server_revision", "engine_revision", "instance_id", "boot_time", "uptime"} {
			if _, ok := in.values[k]; !ok {
				t.Errorf("INFO has no %s", k)
			}
		}
		within(t, "boot_time", in.int(t, "boot_time"))
		if up := in.int(t, "uptime"); up < 0 || up > 60 {
			t.Errorf("uptime %d", up)
		}
		if in.int(t, "clients_lifetime") < 1 {
			t.Errorf("clients_lifetime < 1")
		}
	})
	t.Run("INFO/internals", func(t *testing.T) {
		block := "# internals\nsequential_key_size: 8\ndata_version: 3\nindex_version: 4\n"
		if !strings.Contains(text, block) {
			t.Errorf("INFO internals: want\n%s\nin\n%s", block, text)
		}
	})
	t.Run("INFO/stats", func(t *testing.T) {
		for _, k := range []string{"commands_executed", "commands_failed", "commands_unauthorized",
			"index_disk_read_bytes", "index_disk_write_bytes", "data_disk_read_bytes", "data_disk_write_bytes",
			"network_rx_bytes", "network_tx_bytes"} {
			in.int(t, k)
		}
		if in.int(t, "commands_executed") < 2 || in.int(t, "commands_failed") < 1 {
			t.Errorf("command counters too low:\n%s", text)
		}
		if in.int(t, "network_rx_bytes") == 0 || in.int(t, "network_tx_bytes") == 0 {
			t.Errorf("network counters are zero")
		}
	})
	t.Run("INFO/stats-failure-counters-0db-names", func(t *testing.T) {
		// 0-db v2 reports disk failures as four lines; zstor-like tools
		// parse them by name.
		for _, k := range []string{"index_disk_read_failed", "index_disk_write_failed", "data_disk_read_failed", "data_disk_write_failed"} {
			if _, ok := in.values[k]; !ok {
				t.Errorf("INFO has no %s", k)
			}
		}
	})
	t.Run("INFO/unauthorized-counter", func(t *testing.T) {
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "NSNEW", "x")
		if n := parseInfo(t, string(c.bulk("INFO"))).int(t, "commands_unauthorized"); n != 1 {
			t.Errorf("commands_unauthorized = %d, want 1", n)
		}
	})
}

func TestNamespaceCommands(t *testing.T) {
	t.Parallel()
	t.Run("NSNEW", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "n1")
		c.expectErr("This namespace is not available", "NSNEW", "n1")
		for _, bad := range []string{"default", ".", "..", "a/b", "/"} {
			c.expectErr("This name is not allowed", "NSNEW", bad)
		}
		c.expectErr("Namespace too long", "NSNEW", strings.Repeat("n", 129))
		c.ok("NSNEW", strings.Repeat("n", 128))
		c.expectErr("Invalid argument", "NSNEW", "")
		c.expectErr("Unexpected arguments", "NSNEW")
		c.expectErr("Unexpected arguments", "NSNEW", "a", "b")
		// new namespace: public, no password, no size limit, worm off, user mode
		in := c.nsinfo("n1")
		for k, want := range map[string]string{"public": "yes", "password": "no", "worm": "no",
			"data_limits_bytes": "0", "mode": "userkey", "entries": "0", "locked": "no"} {
			if in.values[k] != want {
				t.Errorf("new namespace %s = %q, want %q", k, in.values[k], want)
			}
		}
	})
	t.Run("NSNEW/admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "NSNEW", "x")
		c.expectErr("Unexpected arguments", "NSNEW")
		c.expectErr("Invalid argument", "NSNEW", "")
		c.ok("AUTH", "pw")
		c.ok("NSNEW", "x")
	})
	t.Run("NSDEL", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSNEW", "gone")
		c.ok("NSNEW", "mine")
		c.expectErr("Cannot remove default namespace", "NSDEL", "default")
		c.expectErr("This namespace doesn't exists", "NSDEL", "never")
		c.ok("SELECT", "mine")
		c.expectErr("Cannot remove namespace you're currently using.", "NSDEL", "mine")
		c.ok("SELECT", "default")
		other := dial(t, s)
		other.ok("SELECT", "gone")
		other.expect(`"k"`, "SET", "k", "v")
		c.ok("NSDEL", "gone")
		c.expect(`["default", "mine"]`, "NSLIST")
		c.expectErr("Namespace not found", "SELECT", "gone")
		if _, err := os.Stat(filepath.Join(s.IndexDir(), "gone")); !os.IsNotExist(err) {
			t.Errorf("index dir of deleted namespace still there: %v", err)
		}
		if _, err := os.Stat(filepath.Join(s.DataDir(), "gone")); !os.IsNotExist(err) {
			t.Errorf("data dir of deleted namespace still there: %v", err)
		}
		// a namespace of the same name starts empty
		c.ok("NSNEW", "gone")
		c.ok("SELECT", "gone")
		c.expect(":0", "DBSIZE")
		c.expectErr("Invalid argument", "NSDEL", "")
		c.expectErr("Namespace too long", "NSDEL", strings.Repeat("n", 129))
	})
	t.Run("NSDEL/client-on-deleted-namespace", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSNEW", "gone")
		other := dial(t, s)
		other.ok("SELECT", "gone")
		c.ok("NSDEL", "gone")
		// its next command gets the error, then it is disconnected
		other.send("GET", "k")
		v, err := other.tryRead()
		if err != nil || v.String() != "-Your active namespace is not available anymore (probably removed)." {
			t.Errorf("client on a deleted namespace: got %s, %v", v, err)
		}
		other.expectClosed()
		alive(t, s)
	})
	t.Run("NSDEL/admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "NSDEL", "x")
	})
	t.Run("NSLIST", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`["default"]`, "NSLIST")
		c.ok("NSNEW", "b")
		c.ok("NSNEW", "a")
		v := c.do("NSLIST")
		if v.Kind != resp.KindArray || len(v.Array) != 3 || v.Array[0].String() != `"default"` {
			t.Errorf("NSLIST = %s, want default first then a, b", v)
		}
	})
	t.Run("NSINFO", testNSINFO)
	t.Run("NSJUMP", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.expect(`"a"`, "SET", "a", "1")
		c.ok("NSJUMP")
		for _, p := range []string{nsFile(s.IndexDir(), "default", "i1"), nsFile(s.DataDir(), "default", "d1")} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("after NSJUMP: %v", err)
			}
		}
		in := c.nsinfo("default")
		if in.values["data_current_id"] != "1" || in.values["data_current_offset"] != "28" {
			t.Errorf("after NSJUMP: data_current_id %s, data_current_offset %s",
				in.values["data_current_id"], in.values["data_current_offset"])
		}
		c.expect(`"b"`, "SET", "b", "2")
		c.expect(`["2", "1"]`, "MGET", "b", "a")
		// the new entry is the first of i1
		if cur := c.bulk("KEYCUR", "b"); !bytes.Equal(cur, cursor(1, 1, 1, 29, zcrc([]byte("2")))) {
			t.Errorf("KEYCUR b after NSJUMP = %x", cur)
		}
		// only the selected namespace jumps
		c.ok("NSNEW", "x")
		c.ok("SELECT", "x")
		c.ok("NSJUMP")
		c.ok("NSJUMP")
		if in := c.nsinfo("x"); in.values["data_current_id"] != "2" {
			t.Errorf("x data_current_id = %s", in.values["data_current_id"])
		}
		if in := c.nsinfo("default"); in.values["data_current_id"] != "1" {
			t.Errorf("default data_current_id = %s", in.values["data_current_id"])
		}
		// the rotated files survive a restart
		s.Restart()
		c = dial(t, s)
		c.expect(`["2", "1"]`, "MGET", "b", "a")
	})
	t.Run("NSJUMP/admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "NSJUMP")
	})
}

var nsinfoOrder = []string{"name", "entries", "public", "worm", "locked", "password", "data_size_bytes",
	"data_size_mb", "data_limits_bytes", "index_size_bytes", "index_size_kb", "next_internal_id", "mode",
	"stats_index_io_errors", "stats_index_io_error_last", "stats_index_faults", "stats_data_io_errors",
	"stats_data_io_error_last", "stats_data_faults", "space_available", "index_disk_freespace_bytes",
	"index_disk_freespace_mb", "data_disk_freespace_bytes", "data_disk_freespace_mb",
	"data_path", "data_active", "index_path", "index_active", "data_current_id", "data_current_offset"}

// wantOrder lists the NSINFO keys expected, in order.
func wantOrder(maxsize, admin bool) []string {
	var out []string
	for _, k := range nsinfoOrder {
		if k == "space_available" && !maxsize {
			continue
		}
		if !admin && (strings.HasPrefix(k, "data_path") || strings.HasPrefix(k, "data_active") ||
			strings.HasPrefix(k, "index_path") || strings.HasPrefix(k, "index_active") ||
			strings.HasPrefix(k, "data_current")) {
			continue
		}
		out = append(out, k)
	}
	return out
}

func testNSINFO(t *testing.T) {
	t.Parallel()
	s, c := start(t, "--admin", "pw")
	c.ok("AUTH", "pw")
	c.expect(`"k"`, "SET", "k", "hello")
	c.expect(`"k2"`, "SET", "k2", "12345678")
	c.ok("NSNEW", "lim")
	c.ok("NSSET", "lim", "maxsize", "1000")
	user := dial(t, s)

	t.Run("NSINFO/field-order-admin", func(t *testing.T) {
		in := c.nsinfo("default")
		if !strings.HasPrefix(in.text, "# namespace\n") {
			t.Errorf("NSINFO does not start with # namespace:\n%s", in.text)
		}
		if got, want := strings.Join(in.keys, ","), strings.Join(wantOrder(false, true), ","); got != want {
			t.Errorf("NSINFO keys\n got: %s\nwant: %s", got, want)
		}
		for k, want := range map[string]string{"name": "default", "entries": "2", "data_size_bytes": "13",
			"data_size_mb": "0.00", "mode": "userkey", "data_current_id": "0",
			"data_path": filepath.Join(s.DataDir(), "default"), "index_path": filepath.Join(s.IndexDir(), "default"),
			"data_active": nsFile(s.DataDir(), "default", "d0"), "index_active": nsFile(s.IndexDir(), "default", "i0"),
			"index_size_bytes": strconv.Itoa(29 + 35 + 36), "next_internal_id": "0x200000000000000",
			"data_current_offset": strconv.Itoa(28 + 18 + 1 + 5 + 18 + 2 + 8)} {
			if in.values[k] != want {
				t.Errorf("NSINFO default %s = %q, want %q", k, in.values[k], want)
			}
		}
	})
	t.Run("NSINFO/space-available-with-maxsize", func(t *testing.T) {
		in := c.nsinfo("lim")
		if got, want := strings.Join(in.keys, ","), strings.Join(wantOrder(true, true), ","); got != want {
			t.Errorf("NSINFO keys\n got: %s\nwant: %s", got, want)
		}
		if in.values["space_available"] != "1000" || in.values["data_limits_bytes"] != "1000" {
			t.Errorf("space_available %s data_limits_bytes %s", in.values["space_available"], in.values["data_limits_bytes"])
		}
	})
	t.Run("NSINFO/no-paths-for-non-admin", func(t *testing.T) {
		with(t, user)
		in := user.nsinfo("default")
		if got, want := strings.Join(in.keys, ","), strings.Join(wantOrder(false, false), ","); got != want {
			t.Errorf("NSINFO keys for a non-admin\n got: %s\nwant: %s", got, want)
		}
		if strings.Contains(in.text, s.Dir) {
			t.Errorf("non-admin NSINFO shows a path:\n%s", in.text)
		}
	})
	t.Run("NSINFO/errors", func(t *testing.T) {
		with(t, user)
		user.expectErr("Namespace not found", "NSINFO", "nope")
		user.expectErr("Namespace too long", "NSINFO", strings.Repeat("n", 129))
		user.expectErr("Unexpected arguments", "NSINFO")
		user.expectErr("Invalid argument", "NSINFO", "")
	})
}

func TestAUTH(t *testing.T) {
	t.Parallel()
	t.Run("AUTH/password", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Access denied", "AUTH", "wrong")
		c.expectErr("Permission denied", "NSNEW", "x")
		c.ok("AUTH", "pw")
		c.ok("NSNEW", "x")
		c.expectErr("Unexpected arguments", "AUTH")
	})
	t.Run("AUTH/disabled-without-admin", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expectErr("Authentication disabled", "AUTH", "pw")
	})
	t.Run("AUTH/SECURE-CHALLENGE-without-admin", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		a, b := c.challenge(), c.challenge()
		if a == b {
			t.Errorf("two challenges are equal: %s", a)
		}
	})
	t.Run("AUTH/SECURE", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		ch := c.challenge()
		c.ok("AUTH", "SECURE", secure(ch, "pw"))
		c.ok("NSNEW", "x")
	})
	t.Run("AUTH/SECURE-uppercase-hash", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		ch := c.challenge()
		c.ok("AUTH", "SECURE", strings.ToUpper(secure(ch, "pw")))
	})
	t.Run("AUTH/SECURE-wrong-hash-uses-up-challenge", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		ch := c.challenge()
		c.expectErr("Access denied", "AUTH", "SECURE", secure(ch, "wrong"))
		c.expectErr("No CHALLENGE requested, secure authentication not available", "AUTH", "SECURE", secure(ch, "pw"))
		c.expectErr("Permission denied", "NSNEW", "x")
	})
	t.Run("AUTH/SECURE-success-uses-up-challenge", func(t *testing.T) {
		t.Parallel()
		s, c := start(t, "--admin", "pw")
		ch := c.challenge()
		c.ok("AUTH", "SECURE", secure(ch, "pw"))
		c.expectErr("No CHALLENGE requested, secure authentication not available", "AUTH", "SECURE", secure(ch, "pw"))
		// the challenge belongs to its connection
		other := dial(t, s)
		other.expectErr("No CHALLENGE requested, secure authentication not available", "AUTH", "SECURE", secure(ch, "pw"))
	})
	t.Run("AUTH/SECURE-without-challenge", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("No CHALLENGE requested, secure authentication not available", "AUTH", "SECURE", secure("0000000000000000", "pw"))
	})
}

func TestWAIT(t *testing.T) {
	t.Parallel()
	t.Run("WAIT/woken-by-other-client", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		other := dial(t, s)
		got := make(chan string, 1)
		begin := time.Now()
		c.send("WAIT", "SET", "3000")
		go func() {
			v, err := c.tryRead()
			if err != nil {
				got <- err.Error()
				return
			}
			got <- v.String()
		}()
		time.Sleep(200 * time.Millisecond)
		other.expect("$-1", "GET", "k") // not the awaited command
		select {
		case v := <-got:
			t.Fatalf("WAIT SET returned %s after a GET", v)
		case <-time.After(200 * time.Millisecond):
		}
		other.expect(`"k"`, "SET", "k", "v")
		select {
		case v := <-got:
			if v != "+SET" {
				t.Errorf("WAIT SET = %s", v)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("WAIT SET not woken by another client's SET")
		}
		if time.Since(begin) > 2500*time.Millisecond {
			t.Errorf("WAIT took %v", time.Since(begin))
		}
		c.expect("+PONG", "PING")
	})
	t.Run("WAIT/star-and-lowercase", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		other := dial(t, s)
		c.send("wait", "*", "3000")
		time.Sleep(150 * time.Millisecond)
		other.expect("$-1", "get", "k")
		c.expectReply("+GET")
	})
	t.Run("WAIT/other-namespace-does-not-wake", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSNEW", "x")
		other := dial(t, s)
		other.ok("SELECT", "x")
		begin := time.Now()
		c.send("WAIT", "SET", "600")
		time.Sleep(100 * time.Millisecond)
		other.expect(`"k"`, "SET", "k", "v")
		c.expectReply("-Timeout")
		if d := time.Since(begin); d < 550*time.Millisecond {
			t.Errorf("WAIT returned after %v", d)
		}
	})
	t.Run("WAIT/timeout", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		begin := time.Now()
		c.expectErr("Timeout", "WAIT", "SET", "100")
		if d := time.Since(begin); d < 90*time.Millisecond || d > 2*time.Second {
			t.Errorf("WAIT 100 ms took %v", d)
		}
	})
	t.Run("WAIT/default-timeout-5s", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		begin := time.Now()
		c.expectErr("Timeout", "WAIT", "SET")
		if d := time.Since(begin); d < 4900*time.Millisecond || d > 8*time.Second {
			t.Errorf("WAIT with the default timeout took %v", d)
		}
	})
	t.Run("WAIT/invalid-timeout", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		for _, ms := range []string{"99", "1800001", "0", "-5", "abc"} {
			c.expectErr("Invalid timeout", "WAIT", "SET", ms)
		}
		c.expectErr("Invalid arguments", "WAIT")
	})
}

func TestFLUSH(t *testing.T) {
	t.Parallel()
	t.Run("FLUSH/empties-private-namespace", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSNEW", "p")
		c.ok("NSSET", "p", "password", "pw")
		c.ok("NSSET", "p", "public", "0")
		c.ok("SELECT", "p", "pw")
		for i := 0; i < 20; i++ {
			c.send("SET", fmt.Sprint("k", i), "value")
			c.read()
		}
		c.ok("NSJUMP")
		c.expect(`"last"`, "SET", "last", "v")
		c.ok("FLUSH")
		c.expect(":0", "DBSIZE")
		c.expect("$-1", "GET", "k1")
		c.expect("$-1", "GET", "last")
		c.expectErr("No more data", "SCAN")
		in := c.nsinfo("p")
		if in.values["entries"] != "0" || in.values["data_size_bytes"] != "0" {
			t.Errorf("after FLUSH: entries %s, data_size_bytes %s", in.values["entries"], in.values["data_size_bytes"])
		}
		// settings are kept
		if in.values["password"] != "yes" || in.values["public"] != "no" {
			t.Errorf("FLUSH lost settings: password %s public %s", in.values["password"], in.values["public"])
		}
		c.expect(`"new"`, "SET", "new", "v")
		s.Restart()
		c = dial(t, s)
		c.ok("SELECT", "p", "pw")
		c.expect(":1", "DBSIZE")
		c.expect("$-1", "GET", "k1")
		c.expect(`"v"`, "GET", "new")
	})
	t.Run("FLUSH/denied-on-public", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k"`, "SET", "k", "v")
		c.expectErr("Flushing public namespace denied", "FLUSH")
		c.expect(`"v"`, "GET", "k")
		c.ok("NSNEW", "pub")
		c.ok("NSSET", "pub", "password", "pw") // public with a password
		c.ok("SELECT", "pub", "pw")
		c.expect(`"k"`, "SET", "k", "v")
		c.expectErr("Flushing public namespace denied", "FLUSH")
		c.ok("NSNEW", "priv-nopw")
		c.ok("NSSET", "priv-nopw", "public", "0") // private without a password
		c.ok("SELECT", "priv-nopw")
		c.expect(`"k"`, "SET", "k", "v")
		c.expectErr("Flushing public namespace denied", "FLUSH")
		c.expect(":1", "DBSIZE")
	})
}

func TestHOOKS(t *testing.T) {
	t.Parallel()
	t.Run("HOOKS/none-configured", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect("[]", "HOOKS")
		c.expect("[]", "HOOKS", "x") // extra arguments ignored, as in 0-db
	})
	t.Run("HOOKS/admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "HOOKS")
	})
}

func TestINDEXDIRTY(t *testing.T) {
	t.Parallel()
	t.Run("INDEX-DIRTY/list-and-reset", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("INDEX", "DIRTY", "RESET")
		c.expect("[]", "INDEX", "DIRTY")
		c.expect(`"k"`, "SET", "k", "v")
		c.expect("[:0]", "INDEX", "DIRTY")
		c.expect("[:0]", "index", "dirty")
		c.ok("INDEX", "DIRTY", "RESET")
		c.expect("[]", "INDEX", "DIRTY")
		c.expectErr("Unexpected arguments", "INDEX")
	})
	t.Run("INDEX-DIRTY/update-flags-old-file", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k"`, "SET", "k", "v")
		c.ok("NSJUMP")
		c.ok("INDEX", "DIRTY", "RESET")
		c.expect(`"k"`, "SET", "k", "v2") // new entry in i1, old one flagged in i0
		c.expect("[:0, :1]", "INDEX", "DIRTY")
	})
	t.Run("INDEX-DIRTY/admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "INDEX", "DIRTY")
		c.expectErr("Permission denied", "INDEX", "DIRTY", "RESET")
	})
}

func TestDATARAW(t *testing.T) {
	t.Parallel()
	t.Run("DATA-RAW/entries", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"k"`, "SET", "k", "hello", "1111")
		c.expect(`"k2"`, "SET", "k2", "v1", "2222")
		c.ok("DEL", "k", "3333")
		c.expect(`["k", :0, "0xdf03cd79", :0, :1111, "hello"]`, "DATA", "RAW", "0", "28")
		second := 28 + 18 + 1 + 5
		c.expect(`["k2", :28, "0x141e4f07", :0, :2222, "v1"]`, "DATA", "RAW", "0", strconv.Itoa(second))
		third := second + 18 + 2 + 2
		c.expect(fmt.Sprintf(`["k", :%d, "0x00000000", :1, :3333, ""]`, second), "DATA", "RAW", "0", strconv.Itoa(third))
		c.expectErr("EOF", "DATA", "RAW", "0", strconv.Itoa(third+18+1))
		c.expectErr("EOF", "DATA", "RAW", "0", "100000")
		c.expect(`["k", :0, "0xdf03cd79", :0, :1111, "hello"]`, "data", "raw", "0", "28")
		c.expectErr("Unexpected arguments", "DATA", "RAW", "0")
	})
	t.Run("DATA-RAW/older-file", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expect(`"a"`, "SET", "a", "v1", "5")
		c.ok("NSJUMP")
		c.expect(`"b"`, "SET", "b", "hello", "6")
		c.expect(`["a", :0, "0x141e4f07", :0, :5, "v1"]`, "DATA", "RAW", "0", "28")
		c.expectErr("EOF", "DATA", "RAW", "0", strconv.Itoa(28+18+1+2))
		// the previous offset carries over the jump, as in 0-db
		c.expect(`["b", :28, "0xdf03cd79", :0, :6, "hello"]`, "DATA", "RAW", "1", "28")
	})
	t.Run("DATA-RAW/admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "DATA", "RAW", "0", "28")
	})
}

func TestRELOAD(t *testing.T) {
	t.Parallel()
	t.Run("RELOAD/keeps-data", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "r")
		c.ok("SELECT", "r")
		c.expect(`"a"`, "SET", "a", "1")
		c.expect(`"b"`, "SET", "b", "2")
		c.ok("DEL", "a")
		c.ok("NSJUMP")
		c.expect(`"c"`, "SET", "c", "3")
		c.ok("RELOAD", "r")
		c.expect(":2", "DBSIZE")
		c.expect(`[$-1, "2", "3"]`, "MGET", "a", "b", "c")
		c.expect(`"d"`, "SET", "d", "4")
		c.expect(`"4"`, "GET", "d")
		c.ok("RELOAD", "default")
	})
	t.Run("RELOAD/errors", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.expectErr("Namespace not found", "RELOAD", "nope")
		c.expectErr("Unexpected arguments", "RELOAD")
		c.expectErr("Invalid argument", "RELOAD", "")
		c.expectErr("Namespace too long", "RELOAD", strings.Repeat("n", 129))
	})
	t.Run("RELOAD/admin-only", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "RELOAD", "default")
	})
}

func TestSTOP(t *testing.T) {
	t.Parallel()
	t.Run("STOP/non-admin-denied", func(t *testing.T) {
		t.Parallel()
		s, c := start(t, "--admin", "pw")
		c.expectErr("Permission denied", "STOP")
		c.expect("+PONG", "PING")
		if s.Wait(300 * time.Millisecond) {
			t.Fatal("server exited after a non-admin STOP")
		}
	})
	t.Run("STOP/admin-stops", func(t *testing.T) {
		t.Parallel()
		s, c := start(t, "--admin", "pw")
		c.expect(`"k"`, "SET", "k", "v")
		c.ok("AUTH", "pw")
		c.expect("+Stopping", "STOP")
		if !s.Wait(10 * time.Second) {
			t.Fatal("server still running 10 s after STOP")
		}
		if s.State == nil || s.State.ExitCode() != 0 {
			t.Errorf("exit after STOP: %v\n%s", s.State, s.Log())
		}
		// clean shutdown: the data is there after a start on the same files
		s.Restart()
		dial(t, s).expect(`"v"`, "GET", "k")
	})
	t.Run("STOP/everyone-admin-without-admin-flag", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.expect("+Stopping", "STOP")
		if !s.Wait(10 * time.Second) {
			t.Fatal("server still running 10 s after STOP")
		}
	})
}
