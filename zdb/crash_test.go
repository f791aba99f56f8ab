package zdb

// Crash safety and robustness (docs: shared/spec/zdb.md §7, the torn-tail
// rule):
//
//   - TestCrashKillDuringWrites: concurrent clients write to a real server
//     started with --sync, the server is SIGKILLed at a random moment and
//     restarted on the same files, several rounds; every acknowledged SET
//     and DEL must be there, nothing else.
//   - TestTornFiles: copies of a data directory whose active index and/or
//     data files are cut at many offsets, or have a payload byte flipped,
//     must open, serve exactly what survived (a flipped entry's key fails;
//     the entries after it stay), and keep working.
//   - TestSecondServerRefused: the .lockfile flock keeps a second server off
//     the same directories.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// ---------------------------------------------------------------------------
// self-describing values

// ctValue is the payload of version ver of key: a header naming the key,
// the version and the size, then filler derived from the header. Whatever
// is read back can be checked on its own with ctParseValue: a payload of
// another key, a torn payload or garbage is caught.
func ctValue(key string, ver, size int) []byte {
	hdr := key + "|" + strconv.Itoa(ver) + "|" + strconv.Itoa(size) + "|"
	n := max(size, len(hdr))
	v := make([]byte, n)
	copy(v, hdr)
	seed := CRC([]byte(hdr))
	for i := len(hdr); i < n; i++ {
		v[i] = byte(seed>>(8*(i%4))) ^ byte(i*131)
	}
	return v
}

// ctParseValue returns the key and version a payload made by ctValue names.
func ctParseValue(v []byte) (key string, ver int, ok bool) {
	parts := bytes.SplitN(v, []byte("|"), 4)
	if len(parts) != 4 {
		return "", 0, false
	}
	ver, err1 := strconv.Atoi(string(parts[1]))
	size, err2 := strconv.Atoi(string(parts[2]))
	if err1 != nil || err2 != nil || size < 0 || size > MaxPayload {
		return "", 0, false
	}
	if !bytes.Equal(ctValue(string(parts[0]), ver, size), v) {
		return "", 0, false
	}
	return string(parts[0]), ver, true
}

// ctSeqTag is the name inside the values of seq id id.
func ctSeqTag(id uint64) string { return "id" + strconv.FormatUint(id, 10) }

// ---------------------------------------------------------------------------
// RESP helpers (internal/resp only: zdb/client is tested elsewhere)

type ctConn struct {
	c net.Conn
	w *resp.Writer
	r *resp.ReplyReader
}

func ctDial(addr string) (*ctConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &ctConn{c: c, w: resp.NewWriter(c, 64<<10), r: resp.NewReplyReader(c, 64<<10)}, nil
}

func (c *ctConn) Close() { c.c.Close() }

func ctArgs(args ...any) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = []byte(v)
		case []byte:
			out[i] = v
		default:
			panic(fmt.Sprintf("ctArgs: %T", a))
		}
	}
	return out
}

// do sends one command and reads its reply. An error means the connection
// failed: the command may or may not have been executed.
func (c *ctConn) do(args ...any) (resp.Value, error) {
	c.c.SetDeadline(time.Now().Add(15 * time.Second))
	c.w.Command(ctArgs(args...)...)
	if err := c.w.Flush(); err != nil {
		return resp.Value{}, err
	}
	return c.r.ReadReply()
}

func (c *ctConn) must(t *testing.T, args ...any) resp.Value {
	t.Helper()
	v, err := c.do(args...)
	if err != nil {
		t.Fatalf("%s: %v", args[0], err)
	}
	return v
}

type ctScanItem struct {
	key    []byte
	length int64
}

// ctScanAll walks SCAN (or RSCAN) to the end over RESP.
func ctScanAll(t *testing.T, c *ctConn, cmd string) []ctScanItem {
	t.Helper()
	var items []ctScanItem
	var cursor []byte
	for {
		var v resp.Value
		if cursor == nil {
			v = c.must(t, cmd)
		} else {
			v = c.must(t, cmd, cursor)
		}
		if v.Kind == resp.KindError {
			if string(v.Str) == "No more data" {
				return items
			}
			t.Fatalf("%s: %s", cmd, v)
		}
		if v.Kind != resp.KindArray || len(v.Array) != 2 || v.Array[1].Kind != resp.KindArray {
			t.Fatalf("%s: malformed reply %s", cmd, v)
		}
		cursor = v.Array[0].Str
		if len(cursor) != CursorSize {
			t.Fatalf("%s: cursor of %d bytes", cmd, len(cursor))
		}
		for _, it := range v.Array[1].Array {
			if it.Kind != resp.KindArray || len(it.Array) != 3 {
				t.Fatalf("%s: malformed item %s", cmd, it)
			}
			items = append(items, ctScanItem{key: it.Array[0].Str, length: it.Array[1].Int})
		}
		if len(items) > 1_000_000 {
			t.Fatalf("%s does not end", cmd)
		}
	}
}

// ---------------------------------------------------------------------------
// (a) SIGKILL during concurrent writes

// ctUserKey is one user-mode key, owned by one client goroutine so that at
// most one operation on it is in flight.
type ctUserKey struct {
	name    string
	live    bool
	ver     int
	pending []ctPending // sent in order, no reply: any prefix may have happened
	nextVer int
}

type ctPending struct {
	del bool
	ver int
}

// ctSeqClient is one seq-mode client and the ids it was given.
type ctSeqClient struct {
	tag     string // value key of its writes: "s<n>"
	ids     map[uint64]*ctSeqKey
	pending *ctSeqPending
	nextVer int
}

type ctSeqKey struct {
	live    bool
	ver     int
	pending *ctPending
}

type ctSeqPending struct{ ver int } // an insert (SET "") without a reply

func ctPayloadSize(r *rand.Rand) int {
	switch n := r.IntN(100); {
	case n < 1:
		return 60_000 + r.IntN(150_000) // big: torn writes, rotations
	case n < 10:
		return 4_000 + r.IntN(16_000)
	default:
		return r.IntN(3000)
	}
}

// ctUserWorker sends pipelined batches of 1 to 5 commands, often on the
// same key (SET then DEL, SET then SET), so that one group commit holds
// several versions of a key and a kill can land between its writes.
func ctUserWorker(addr string, keys []*ctUserKey, r *rand.Rand, fail func(string, ...any)) int {
	c, err := ctDial(addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	type sent struct {
		k   *ctUserKey
		del bool
		ver int
	}
	ops := 0
	for {
		n := 1 + r.IntN(5)
		batch := make([]sent, 0, n)
		sim := map[*ctUserKey]bool{} // liveness as the batch goes
		var k *ctUserKey
		for i := 0; i < n; i++ {
			if k == nil || r.IntN(10) < 6 {
				k = keys[r.IntN(len(keys))]
			}
			live, ok := sim[k]
			if !ok {
				live = k.live
			}
			if live && r.IntN(4) == 0 {
				batch = append(batch, sent{k: k, del: true})
				sim[k] = false
				c.w.Command(ctArgs("DEL", k.name)...)
			} else {
				ver := k.nextVer
				k.nextVer++
				batch = append(batch, sent{k: k, ver: ver})
				sim[k] = true
				c.w.Command(ctArgs("SET", k.name, ctValue(k.name, ver, ctPayloadSize(r)))...)
			}
			k.pending = append(k.pending, ctPending{del: batch[i].del, ver: batch[i].ver})
		}
		c.c.SetDeadline(time.Now().Add(15 * time.Second))
		if err := c.w.Flush(); err != nil {
			return ops
		}
		for _, op := range batch {
			v, err := c.r.ReadReply()
			if err != nil {
				return ops
			}
			ops++
			op.k.pending = op.k.pending[1:]
			if op.del {
				if v.Kind != resp.KindSimple || string(v.Str) != "OK" {
					fail("DEL %s: %s (model: live=%v v%d)", op.k.name, v, op.k.live, op.k.ver)
					return ops
				}
				op.k.live = false
				continue
			}
			if v.Kind != resp.KindBulk || string(v.Str) != op.k.name {
				fail("SET %s v%d: %s", op.k.name, op.ver, v)
				return ops
			}
			op.k.live, op.k.ver = true, op.ver
		}
	}
}

func ctSeqWorker(addr, ns string, sc *ctSeqClient, r *rand.Rand, fail func(string, ...any)) int {
	c, err := ctDial(addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	if v, err := c.do("SELECT", ns); err != nil || v.Kind != resp.KindSimple {
		if err == nil {
			fail("SELECT %s: %s", ns, v)
		}
		return 0
	}
	var live []uint64
	for id, k := range sc.ids {
		if k.live {
			live = append(live, id)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i] < live[j] })
	ops := 0
	for ; ; ops++ {
		ver := sc.nextVer
		sc.nextVer++
		size := ctPayloadSize(r)
		if n := r.IntN(10); len(live) > 0 && n < 4 {
			i := r.IntN(len(live))
			id := live[i]
			k := sc.ids[id]
			if n == 0 {
				k.pending = &ctPending{del: true}
				v, err := c.do("DEL", seqKey(id))
				if err != nil {
					return ops
				}
				k.pending = nil
				if v.Kind != resp.KindSimple {
					fail("seq DEL %d: %s", id, v)
					return ops
				}
				k.live = false
				live = append(live[:i], live[i+1:]...)
				continue
			}
			k.pending = &ctPending{ver: ver}
			v, err := c.do("SET", seqKey(id), ctValue(sc.tag, ver, size))
			if err != nil {
				return ops
			}
			k.pending = nil
			if v.Kind != resp.KindBulk || !bytes.Equal(v.Str, seqKey(id)) {
				fail("seq update %d: %s", id, v)
				return ops
			}
			k.ver = ver
			continue
		}
		sc.pending = &ctSeqPending{ver: ver}
		v, err := c.do("SET", "", ctValue(sc.tag, ver, size))
		if err != nil {
			return ops
		}
		sc.pending = nil
		if v.Kind != resp.KindBulk || len(v.Str) != SeqKeyLen {
			fail("seq insert: %s", v)
			return ops
		}
		id := binary.LittleEndian.Uint64(v.Str)
		if old := sc.ids[id]; old != nil && old.live {
			fail("seq insert returned id %d, already live for this client (v%d)", id, old.ver)
			return ops
		}
		sc.ids[id] = &ctSeqKey{live: true, ver: ver}
		live = append(live, id)
	}
}

// ctVerifyUser checks every user key against the model over RESP, then
// settles pending operations to what the server shows.
func ctVerifyUser(t *testing.T, c *ctConn, keys []*ctUserKey) (settled int) {
	t.Helper()
	byName := map[string]*ctUserKey{}
	for _, k := range keys {
		byName[k.name] = k
		v := c.must(t, "GET", k.name)
		gotLive := !(v.Kind == resp.KindBulk && v.Nil)
		gotVer := -1
		if gotLive {
			if v.Kind != resp.KindBulk {
				t.Fatalf("GET %s: %s", k.name, v)
			}
			name, ver, ok := ctParseValue(v.Str)
			if !ok || name != k.name {
				t.Fatalf("GET %s: garbage value (%d bytes, %q...)", k.name, len(v.Str), v.Str[:min(40, len(v.Str))])
			}
			gotVer = ver
		}
		// The acknowledged state, or the state after any prefix of the
		// commands in flight.
		ok := gotLive == k.live && (!gotLive || gotVer == k.ver)
		for _, p := range k.pending {
			ok = ok || (p.del && !gotLive) || (!p.del && gotLive && gotVer == p.ver)
		}
		if !ok {
			t.Errorf("key %s: got live=%v v%d; acknowledged state live=%v v%d, in flight %+v",
				k.name, gotLive, gotVer, k.live, k.ver, k.pending)
		}
		settled += len(k.pending)
		k.live, k.ver, k.pending = gotLive, gotVer, nil
	}
	// SCAN shows exactly the live keys, once each, with their lengths;
	// RSCAN the same backwards.
	items := ctScanAll(t, c, "SCAN")
	seen := map[string]bool{}
	for _, it := range items {
		k := byName[string(it.key)]
		if k == nil {
			t.Errorf("SCAN returned a key never written: %q", it.key)
			continue
		}
		if seen[k.name] {
			t.Errorf("SCAN returned %s twice", k.name)
		}
		seen[k.name] = true
		if !k.live {
			t.Errorf("SCAN returned %s, which GET says is gone", k.name)
		}
	}
	for _, k := range keys {
		if k.live && !seen[k.name] {
			t.Errorf("SCAN misses live key %s", k.name)
		}
	}
	ritems := ctScanAll(t, c, "RSCAN")
	if len(ritems) != len(items) {
		t.Errorf("RSCAN found %d keys, SCAN %d", len(ritems), len(items))
	} else {
		for i := range items {
			if !bytes.Equal(items[i].key, ritems[len(items)-1-i].key) {
				t.Errorf("RSCAN is not SCAN reversed at %d", i)
				break
			}
		}
	}
	if v := c.must(t, "DBSIZE"); v.Int != int64(len(items)) {
		t.Errorf("DBSIZE %d, SCAN found %d", v.Int, len(items))
	}
	return settled
}

func ctVerifySeq(t *testing.T, c *ctConn, ns string, clients []*ctSeqClient) {
	t.Helper()
	if v := c.must(t, "SELECT", ns); v.Kind != resp.KindSimple {
		t.Fatalf("SELECT %s: %s", ns, v)
	}
	byTag := map[string]*ctSeqClient{}
	owner := map[uint64]*ctSeqClient{}
	for _, sc := range clients {
		byTag[sc.tag] = sc
		for id := range sc.ids {
			owner[id] = sc
		}
	}
	items := ctScanAll(t, c, "SCAN")
	seen := map[uint64]bool{}
	for _, it := range items {
		if len(it.key) != SeqKeyLen {
			t.Errorf("seq SCAN: key of %d bytes", len(it.key))
			continue
		}
		id := binary.LittleEndian.Uint64(it.key)
		if seen[id] {
			t.Errorf("seq SCAN: id %d twice", id)
		}
		seen[id] = true
		if owner[id] != nil {
			continue // checked below
		}
		// Unknown id: only the insert in flight of some client may be it.
		v := c.must(t, "GET", it.key)
		tag, ver, ok := ctParseValue(v.Str)
		sc := byTag[tag]
		if !ok || sc == nil || sc.pending == nil || sc.pending.ver != ver {
			t.Errorf("seq SCAN: id %d holds %d bytes that no acknowledged or pending write made", id, len(v.Str))
			continue
		}
		sc.ids[id] = &ctSeqKey{live: true, ver: ver}
		owner[id] = sc
		sc.pending = nil
	}
	for _, sc := range clients {
		sc.pending = nil // the insert did not happen, or was adopted above
		for id, k := range sc.ids {
			v := c.must(t, "GET", seqKey(id))
			gotLive := !(v.Kind == resp.KindBulk && v.Nil)
			gotVer := -1
			if gotLive {
				tag, ver, ok := ctParseValue(v.Str)
				if v.Kind != resp.KindBulk || !ok || tag != sc.tag {
					t.Fatalf("seq GET %d: garbage (%s)", id, v.String()[:min(60, len(v.String()))])
				}
				gotVer = ver
			}
			okAcked := gotLive == k.live && (!gotLive || gotVer == k.ver)
			okPending := false
			if p := k.pending; p != nil {
				okPending = (p.del && !gotLive) || (!p.del && gotLive && gotVer == p.ver)
			}
			if !okAcked && !okPending {
				t.Errorf("seq id %d: got live=%v v%d; acknowledged live=%v v%d, pending %+v",
					id, gotLive, gotVer, k.live, k.ver, k.pending)
			}
			if gotLive != seen[id] {
				t.Errorf("seq id %d: GET live=%v but SCAN %v", id, gotLive, seen[id])
			}
			k.live, k.ver, k.pending = gotLive, gotVer, nil
		}
	}
}

// TestCrashKillDuringWrites: 6 user-mode clients on the default namespace
// and 3 seq-mode clients on another write concurrently to a server with
// --sync and small data files; the server is SIGKILLed at a random moment
// and restarted on the same directories, 5 times. Every acknowledged write
// and delete must survive; an operation cut by the kill may have happened or
// not; nothing else may appear.
func TestCrashKillDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	dir := t.TempDir()
	s := zdbtest.StartIn(t, dir, "--sync", "--datasize", "524288")
	const seqNS = "crashseq"
	{
		c, err := ctDial(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range [][]any{{"NSNEW", seqNS}, {"NSSET", seqNS, "mode", "seq"}} {
			if v := c.must(t, cmd...); v.Kind != resp.KindSimple {
				t.Fatalf("%v: %s", cmd, v)
			}
		}
		c.Close()
	}
	const userClients, seqClients, keysPerClient = 6, 3, 50
	var userKeys [][]*ctUserKey
	var all []*ctUserKey
	for i := 0; i < userClients; i++ {
		var ks []*ctUserKey
		for j := 0; j < keysPerClient; j++ {
			k := &ctUserKey{name: fmt.Sprintf("c%d-key-%03d", i, j)}
			ks = append(ks, k)
			all = append(all, k)
		}
		userKeys = append(userKeys, ks)
	}
	var seqs []*ctSeqClient
	for i := 0; i < seqClients; i++ {
		seqs = append(seqs, &ctSeqClient{tag: fmt.Sprintf("s%d", i), ids: map[uint64]*ctSeqKey{}})
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	var failMu sync.Mutex
	var failures []string
	fail := func(f string, a ...any) {
		failMu.Lock()
		failures = append(failures, fmt.Sprintf(f, a...))
		failMu.Unlock()
	}
	const rounds = 5
	totalOps, totalSettled := 0, 0
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		var opsMu sync.Mutex
		ops := 0
		for i := 0; i < userClients; i++ {
			wg.Add(1)
			wr := rand.New(rand.NewPCG(seed, uint64(100*round+i+2)))
			go func(ks []*ctUserKey) {
				defer wg.Done()
				n := ctUserWorker(s.Addr(), ks, wr, fail)
				opsMu.Lock()
				ops += n
				opsMu.Unlock()
			}(userKeys[i])
		}
		for i := 0; i < seqClients; i++ {
			wg.Add(1)
			wr := rand.New(rand.NewPCG(seed, uint64(100*round+50+i)))
			go func(sc *ctSeqClient) {
				defer wg.Done()
				n := ctSeqWorker(s.Addr(), seqNS, sc, wr, fail)
				opsMu.Lock()
				ops += n
				opsMu.Unlock()
			}(seqs[i])
		}
		time.Sleep(time.Duration(300+r.IntN(900)) * time.Millisecond)
		s.Kill()
		wg.Wait()
		for _, f := range failures {
			t.Error(f)
		}
		if len(failures) > 0 {
			t.Fatalf("round %d: wrong replies before the kill", round)
		}
		totalOps += ops

		s.RestartAfterKill()
		c, err := ctDial(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		totalSettled += ctVerifyUser(t, c, all)
		ctVerifySeq(t, c, seqNS, seqs)
		c.Close()
		if t.Failed() {
			t.Fatalf("round %d (seed %d): state after the restart is wrong; server log:\n%s", round, seed, s.Log())
		}
	}
	files, _ := filepath.Glob(filepath.Join(s.DataDir(), DefaultNamespace, "d*"))
	t.Logf("%d rounds, %d acknowledged operations, %d in flight at a kill, %d data files", rounds, totalOps, totalSettled, len(files))
	if len(files) < 2 {
		t.Errorf("no rotation happened (%d data files): the test should cross file boundaries", len(files))
	}
	// A clean restart changes nothing.
	s.Restart()
	c, err := ctDial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := ctVerifyUser(t, c, all); n != 0 {
		t.Errorf("%d pending operations after a clean restart", n)
	}
	ctVerifySeq(t, c, seqNS, seqs)
}

// ---------------------------------------------------------------------------
// (c) a second server on the same directories

func TestSecondServerRefused(t *testing.T) {
	dir := t.TempDir()
	opts := Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"), Logger: ctLogger(io.Discard)}
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Namespace(DefaultNamespace).Set([]byte("k"), []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	// In the same process: flock is per open file, so this conflicts too.
	if e2, err := Open(opts); err == nil {
		e2.Close()
		t.Fatal("a second engine opened the same directories")
	}
	// Only the index root shared: still refused.
	if e2, err := Open(Options{DataDir: filepath.Join(dir, "data2"), IndexDir: opts.IndexDir, Logger: ctLogger(io.Discard)}); err == nil {
		e2.Close()
		t.Fatal("a second engine opened the same index directory")
	}
	e.Close()
	e, err = Open(opts)
	if err != nil {
		t.Fatalf("reopen after Close: %v", err)
	}
	e.Close()

	if testing.Short() {
		return
	}
	s := zdbtest.StartIn(t, dir)
	c, err := ctDial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.must(t, "SET", "before", "1")
	port := zdbtest.FreePort(t)
	cmd := exec.Command(zdbtest.Binary(t), "--listen", "127.0.0.1", "--port", strconv.Itoa(port),
		"--data", s.DataDir(), "--index", s.IndexDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("second server exited 0:\n%s", out.String())
		}
		if !strings.Contains(out.String(), "in use") {
			t.Errorf("second server's message does not say the directory is in use:\n%s", out.String())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Fatalf("second server on the same directories kept running:\n%s", out.String())
	}
	// The first one is unaffected.
	if v := c.must(t, "GET", "before"); string(v.Str) != "1" {
		t.Fatalf("GET before = %s", v)
	}
	if v := c.must(t, "SET", "after", "2"); string(v.Str) != "after" {
		t.Fatalf("SET after = %s", v)
	}
}

// ---------------------------------------------------------------------------
// (b) torn and corrupt files

func ctLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// ctOp is one write made while building the base directory, with where its
// entries went.
type ctOp struct {
	kind       byte // 's' user SET, 'd' DEL, 'i' seq insert, 'u' seq update
	key        string
	id         uint64
	ver        int
	file       uint32 // active file id at the time
	idxB, idxA int64  // size of i<file> before and after
	datB, datA int64  // size of d<file> before and after
}

type ctNSLog struct {
	name string
	seq  bool
	ops  []ctOp
	cur  uint32
	live []string // user: live keys; seq: live ids as seqKey strings
	keys int
}

type ctBase struct {
	dir  string
	logs []*ctNSLog // default (user), then ctSeqNS (seq)
}

const ctSeqNS = "seqns"

func ctOptions(dir string, log *slog.Logger) Options {
	return Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
		DataSize: MinDataSize, Logger: log}
}

func ctFileSize(t testing.TB, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func (l *ctNSLog) indexPath(dir string, id uint32) string {
	return filepath.Join(dir, "index", l.name, "i"+strconv.Itoa(int(id)))
}

func (l *ctNSLog) dataPath(dir string, id uint32) string {
	return filepath.Join(dir, "data", l.name, "d"+strconv.Itoa(int(id)))
}

// step makes one random write and records it.
func (l *ctNSLog) step(t testing.TB, dir string, ns *Namespace, r *rand.Rand, small, forceNew bool) {
	size := 20 + r.IntN(1500)
	if small {
		size = 10 + r.IntN(60)
	}
	op := ctOp{file: l.cur, ver: len(l.ops) + 1}
	op.idxB, op.datB = ctFileSize(t, l.indexPath(dir, l.cur)), ctFileSize(t, l.dataPath(dir, l.cur))
	n := r.IntN(100)
	switch {
	case forceNew || len(l.live) < 3 || n < 55:
		if l.seq {
			op.kind, op.id = 'i', ns.NextID()
			key, err := ns.Set(nil, ctValue(ctSeqTag(op.id), op.ver, size), 0)
			if err != nil || binary.LittleEndian.Uint64(key) != op.id {
				t.Fatalf("seq insert: %x, %v (want id %d)", key, err, op.id)
			}
			op.key = string(key)
		} else {
			op.kind, op.key = 's', fmt.Sprintf("key-%03d", l.keys)
			l.keys++
			if _, err := ns.Set([]byte(op.key), ctValue(op.key, op.ver, size), 0); err != nil {
				t.Fatal(err)
			}
		}
		l.live = append(l.live, op.key)
	case n < 85:
		op.key = l.live[r.IntN(len(l.live))]
		tag := op.key
		op.kind = 's'
		if l.seq {
			op.kind, op.id = 'u', binary.LittleEndian.Uint64([]byte(op.key))
			tag = ctSeqTag(op.id)
		}
		if _, err := ns.Set([]byte(op.key), ctValue(tag, op.ver, size), 0); err != nil {
			t.Fatal(err)
		}
	default:
		i := r.IntN(len(l.live))
		op.kind, op.key = 'd', l.live[i]
		if l.seq {
			op.id = binary.LittleEndian.Uint64([]byte(op.key))
		}
		if err := ns.Del([]byte(op.key), 0); err != nil {
			t.Fatal(err)
		}
		l.live = append(l.live[:i], l.live[i+1:]...)
	}
	op.idxA, op.datA = ctFileSize(t, l.indexPath(dir, l.cur)), ctFileSize(t, l.dataPath(dir, l.cur))
	if _, err := os.Stat(l.indexPath(dir, l.cur+1)); err == nil {
		t.Fatalf("%s rotated by itself: the base is meant to rotate only on Jump", l.name)
	}
	l.ops = append(l.ops, op)
}

// ctBuildBase writes a data directory with two namespaces (user and seq),
// three files each (rotation by Jump), overwrites and deletes that reach
// back into older files, and small entries at the end of the active files.
func ctBuildBase(t testing.TB) *ctBase {
	t.Helper()
	return ctBuildBaseIn(t, t.TempDir())
}

func ctBuildBaseIn(t testing.TB, dir string) *ctBase {
	e, err := Open(ctOptions(dir, ctLogger(io.Discard)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.CreateNamespace(ctSeqNS); err != nil {
		t.Fatal(err)
	}
	if err := e.Namespace(ctSeqNS).SetProperty("mode", "seq"); err != nil {
		t.Fatal(err)
	}
	b := &ctBase{dir: dir, logs: []*ctNSLog{{name: DefaultNamespace}, {name: ctSeqNS, seq: true}}}
	r := rand.New(rand.NewPCG(42, 4242))
	counts := []int{30, 25, 30}
	for phase, n := range counts {
		if phase > 0 {
			for _, l := range b.logs {
				if err := e.Namespace(l.name).Jump(); err != nil {
					t.Fatal(err)
				}
				l.cur++
			}
		}
		for i := 0; i < n; i++ {
			last := phase == len(counts)-1
			for _, l := range b.logs {
				// Small entries at the end of the active files, so that
				// every offset there can be tried; the last write is new.
				l.step(t, dir, e.Namespace(l.name), r, last && i >= n-10, last && i == n-1)
			}
		}
	}
	return b
}

// ctWant is what a key must look like after recovery.
type ctWant struct {
	ver  int  // the version it must have; 0: it must be absent
	lost bool // its last write was cut: absent, or (leniently) an older version
	// damaged: its data entry is damaged; SCAN lists it, reads fail
	// (ErrInternal) and CHECK says 0. Version -1 in the maps of versions.
	damaged bool
}

// ctCut describes a damaged copy: the active files of one namespace cut at
// idx and dat bytes (-1: untouched).
type ctCut struct {
	idx, dat int64
}

// ctExpect replays a namespace's writes and says what must survive a cut of
// its active files. Index and data entries of the active file are appended
// in the same order, and recovery keeps the longest prefix of index entries
// whose data entries are whole and valid, so a write survives when both its
// entries end before the cuts. A deleted key stays deleted: the flag is set
// in place in an entry that survives or is gone. nextID is the seq id the
// next insert must get.
func (l *ctNSLog) ctExpect(cut ctCut) (want map[string]ctWant, nextID uint64) {
	active := l.cur
	want = map[string]ctWant{}
	before := func(end, limit int64) bool { return limit < 0 || end <= limit }
	if !l.seq {
		for _, op := range l.ops {
			switch op.kind {
			case 's':
				if op.file != active || (before(op.idxA, cut.idx) && before(op.datA, cut.dat)) {
					want[op.key] = ctWant{ver: op.ver}
				} else {
					want[op.key] = ctWant{ver: op.ver, lost: true}
				}
			case 'd':
				want[op.key] = ctWant{}
			}
		}
		return want, 0
	}
	type slot struct {
		file     uint32
		off, end int64
		dfile    uint32
		dend     int64
		ver      int
		deleted  bool
		updated  bool // rewritten in place: its parent is a later copy
	}
	slots := map[uint64]*slot{}
	// Every entry appended to an index file, in order: a slot (insert) or
	// the flagged copy an update appends, which keeps the location of the
	// version it replaced.
	type appended struct {
		file     uint32
		off, end int64
		slot     *slot // nil for a copy
		dfile    uint32
		dend     int64
	}
	var appends []appended
	for _, op := range l.ops {
		switch op.kind {
		case 'i':
			s := &slot{file: op.file, off: op.idxB, end: op.idxA, dfile: op.file, dend: op.datA, ver: op.ver}
			slots[op.id] = s
			appends = append(appends, appended{file: op.file, off: op.idxB, end: op.idxA, slot: s})
		case 'u':
			s := slots[op.id]
			appends = append(appends, appended{file: op.file, off: op.idxB, end: op.idxA, dfile: s.dfile, dend: s.dend})
			s.dfile, s.dend, s.ver, s.updated = op.file, op.datA, op.ver, true
		case 'd':
			slots[op.id].deleted = true
		}
	}
	// Recovery ends the active index at the first entry that points at
	// data of the active data file that did not survive, unless it is a
	// slot rewritten in place by an update: that one is flagged deleted
	// (if it was live) and the replay goes on.
	stop := int64(1 << 62)
	if cut.idx >= 0 {
		stop = cut.idx
	}
	for _, a := range appends {
		if a.file != active || a.off >= stop {
			continue
		}
		dfile, dend := a.dfile, a.dend
		if a.slot != nil {
			dfile, dend = a.slot.dfile, a.slot.dend
			if a.slot.updated {
				continue // deleted or not: recovery flags it, the next load must agree
			}
		}
		if dfile == active && !before(dend, cut.dat) {
			stop = a.off
			break
		}
	}
	for id, s := range slots {
		ok := !s.deleted && (s.file != active || s.end <= stop) && (s.dfile != active || before(s.dend, cut.dat))
		if ok {
			want[string(seqKey(id))] = ctWant{ver: s.ver}
		} else {
			want[string(seqKey(id))] = ctWant{}
		}
	}
	for _, a := range appends {
		if a.file != active || a.end <= stop {
			nextID++
		}
	}
	return want, nextID
}

// ctCheckNS checks an opened namespace against want (every key ever
// written is in want): SCAN returns each surviving key once and nothing
// else, every key SCAN returns is readable with a valid value of its own,
// RSCAN is SCAN reversed, Len agrees, and absent keys are absent. With
// safety set, want only bounds what may appear: any version of a key
// written before is accepted, and a key may be missing. It returns the
// version of every key found.
func ctCheckNS(t *testing.T, e *Engine, name string, seq bool, want map[string]ctWant, safety bool) map[string]int {
	t.Helper()
	ns := e.Namespace(name)
	if ns == nil {
		t.Fatalf("namespace %s missing", name)
	}
	if seq != (ns.Mode() == ModeSeq) {
		t.Fatalf("%s: mode %s", name, ns.Mode())
	}
	got := map[string]int{}
	var order []string
	var cur []byte
	for {
		items, next, err := ns.Scan(cur, false, 7)
		if errors.Is(err, ErrNoMoreData) {
			break
		}
		if err != nil {
			t.Fatalf("%s: SCAN: %v", name, err)
		}
		for _, it := range items {
			k := string(it.Key)
			if _, dup := got[k]; dup {
				t.Errorf("%s: SCAN returned %x twice", name, k)
				continue
			}
			v, err := ns.Get(it.Key, nil)
			if err != nil && want[k].damaged && errors.Is(err, ErrInternal) {
				if c, err := ns.Check(it.Key); err != nil || c != 0 {
					t.Errorf("%s: CHECK %x (damaged) = %d, %v", name, k, c, err)
				}
				got[k] = -1
				order = append(order, k)
				continue
			}
			if err != nil {
				t.Errorf("%s: SCAN returned %x, but GET fails: %v", name, k, err)
				got[k] = -2
				continue
			}
			tag := k
			if seq {
				tag = ctSeqTag(binary.LittleEndian.Uint64(it.Key))
			}
			vk, ver, ok := ctParseValue(v)
			if !ok || vk != tag {
				t.Errorf("%s: key %x holds a garbage value (%d bytes)", name, k, len(v))
				got[k] = -2
				continue
			}
			if int(it.Length) != len(v) {
				t.Errorf("%s: SCAN says %x is %d bytes, GET gives %d", name, k, it.Length, len(v))
			}
			if c, err := ns.Check(it.Key); err != nil || c != 1 {
				t.Errorf("%s: CHECK %x = %d, %v", name, k, c, err)
			}
			got[k] = ver
			order = append(order, k)
		}
		cur = next
	}
	// RSCAN walks the same keys backwards.
	var rorder []string
	cur = nil
	for {
		items, next, err := ns.Scan(cur, true, 5)
		if errors.Is(err, ErrNoMoreData) {
			break
		}
		if err != nil {
			t.Fatalf("%s: RSCAN: %v", name, err)
		}
		for _, it := range items {
			rorder = append(rorder, string(it.Key))
		}
		cur = next
		if len(rorder) > 10*len(order)+100 {
			t.Fatalf("%s: RSCAN does not end", name)
		}
	}
	if len(rorder) != len(order) {
		t.Errorf("%s: RSCAN found %d keys, SCAN %d", name, len(rorder), len(order))
	} else {
		for i := range order {
			if order[i] != rorder[len(order)-1-i] {
				t.Errorf("%s: RSCAN is not SCAN reversed at %d", name, i)
				break
			}
		}
	}
	if ns.Len() != len(got) {
		t.Errorf("%s: Len %d, SCAN found %d", name, ns.Len(), len(got))
	}
	for k, ver := range got {
		w, known := want[k]
		switch {
		case !known:
			t.Errorf("%s: SCAN returned %x, a key never written (garbage)", name, k)
		case w.damaged:
			if ver != -1 {
				t.Errorf("%s: %x is served (v%d), but its data entry is damaged", name, k, ver)
			}
		case safety:
			if w.ver == 0 && !w.lost {
				t.Errorf("%s: %x is served (v%d) but was deleted", name, k, ver)
			} else if ver > w.ver {
				t.Errorf("%s: %x at v%d, newer than anything written (v%d)", name, k, ver, w.ver)
			}
		case w.ver == 0 && !w.lost:
			t.Errorf("%s: %x is served (v%d) but was deleted", name, k, ver)
		case w.lost:
			if ver >= w.ver {
				t.Errorf("%s: %x at v%d, but its write v%d was cut", name, k, ver, w.ver)
			}
		case ver != w.ver:
			t.Errorf("%s: %x at v%d, want v%d", name, k, ver, w.ver)
		}
	}
	for k, w := range want {
		if _, found := got[k]; found {
			continue
		}
		if !safety && w.ver != 0 && !w.lost {
			t.Errorf("%s: %x (v%d) is missing", name, k, w.ver)
		}
		if _, err := ns.Get([]byte(k), nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %x is not in SCAN but GET gives %v", name, k, err)
		}
	}
	return got
}

// ctScratchDir is a temporary directory on tmpfs when there is one: the
// torn-file cases open and close hundreds of copies, and fsync on a real
// disk would make that slow.
func ctScratchDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "zdb-torn-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// ctCopyTree copies the base directory.
func ctCopyTree(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if info.Name() == ".lockfile" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ctDamage is one damaged copy to try.
type ctDamage struct {
	cat    string // category, a subtest
	desc   string
	ns     int   // which namespace log: 0 user, 1 seq
	cut    ctCut // on the active files; also the expectation
	oldIdx int64 // >= 0: cut the index file before the active one here (safety checks only)
	flip   int64 // >= 0: flip a byte of the active data file here
	// flipKey: the key whose live version the flipped entry holds ("" if
	// superseded or the entry is the torn last one, then cut says what
	// survives).
	flipKey string
}

func (d ctDamage) apply(t testing.TB, b *ctBase, dir string) {
	l := b.logs[d.ns]
	trunc := func(path string, n int64) {
		if err := os.Truncate(path, n); err != nil {
			t.Fatal(err)
		}
	}
	if d.flip >= 0 {
		path := l.dataPath(dir, l.cur)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		raw[d.flip] ^= 0x5a
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	if d.oldIdx >= 0 {
		trunc(l.indexPath(dir, l.cur-1), d.oldIdx)
	}
	if d.cut.idx >= 0 {
		trunc(l.indexPath(dir, l.cur), d.cut.idx)
	}
	if d.cut.dat >= 0 {
		trunc(l.dataPath(dir, l.cur), d.cut.dat)
	}
}

// ctDamages lists the damaged copies: every offset across the last entries
// of each active file, a spread across the whole files, both files cut at
// once, a payload byte flipped in each entry of the active data file, and
// cuts of the index file before the active one.
func ctDamages(t testing.TB, b *ctBase, r *rand.Rand) []ctDamage {
	var ds []ctDamage
	for n, l := range b.logs {
		idxSize := ctFileSize(t, l.indexPath(b.dir, l.cur))
		datSize := ctFileSize(t, l.dataPath(b.dir, l.cur))
		// Where the last 6 writes of the active file start.
		var idxTail, datTail int64 = idxSize, datSize
		cnt := 0
		for i := len(l.ops) - 1; i >= 0 && cnt < 6; i-- {
			op := l.ops[i]
			if op.file != l.cur {
				break
			}
			if op.idxA > op.idxB {
				idxTail = op.idxB
			}
			datTail = op.datB
			cnt++
		}
		cat := ""
		add := func(desc string, c ctCut) {
			ds = append(ds, ctDamage{cat: l.name + "/" + cat, desc: desc, ns: n, cut: c, oldIdx: -1, flip: -1})
		}
		cat = "index-tail"
		for x := idxTail; x < idxSize; x++ {
			add(fmt.Sprintf("%s: active index cut at %d of %d", l.name, x, idxSize), ctCut{x, -1})
		}
		cat = "data-tail"
		for y := datTail; y < datSize; y++ {
			add(fmt.Sprintf("%s: active data cut at %d of %d", l.name, y, datSize), ctCut{-1, y})
		}
		cat = "headers"
		for _, x := range []int64{0, 1, 3, 4, 10, 28, 29, 30} {
			add(fmt.Sprintf("%s: active index cut in its header at %d", l.name, x), ctCut{x, -1})
		}
		for _, y := range []int64{0, 2, 4, 27, 28, 29} {
			add(fmt.Sprintf("%s: active data cut in its header at %d", l.name, y), ctCut{-1, y})
		}
		cat = "spread"
		for i := 0; i < 40; i++ {
			x := IndexHeaderSize + r.Int64N(idxSize-IndexHeaderSize)
			add(fmt.Sprintf("%s: active index cut at %d of %d", l.name, x, idxSize), ctCut{x, -1})
			y := DataHeaderSize + r.Int64N(datSize-DataHeaderSize)
			add(fmt.Sprintf("%s: active data cut at %d of %d", l.name, y, datSize), ctCut{-1, y})
		}
		cat = "both"
		for i := 0; i < 60; i++ {
			var x, y int64
			if i%2 == 0 {
				x, y = idxTail+r.Int64N(idxSize-idxTail+1), datTail+r.Int64N(datSize-datTail+1)
			} else {
				x, y = IndexHeaderSize+r.Int64N(idxSize-IndexHeaderSize+1), DataHeaderSize+r.Int64N(datSize-DataHeaderSize+1)
			}
			add(fmt.Sprintf("%s: active index cut at %d of %d and data at %d of %d", l.name, x, idxSize, y, datSize), ctCut{x, y})
		}
		// A flipped payload byte: the entry's key fails if the entry holds
		// its live version, and every other entry stays; unless nothing
		// valid follows the entry, which is then a torn tail and cut.
		final, _ := l.ctExpect(ctCut{-1, -1})
		for _, op := range l.ops {
			if op.file != l.cur || op.kind == 'd' {
				continue
			}
			keyLen := int64(len(op.key))
			payload := op.datA - op.datB - DataEntryFixed - keyLen
			if payload <= 0 {
				continue
			}
			cut, flipKey := ctCut{-1, -1}, ""
			if op.datA == datSize {
				cut = ctCut{-1, op.datB}
			} else if final[op.key].ver == op.ver {
				flipKey = op.key
			}
			for _, at := range []int64{0, payload / 2, payload - 1} {
				ds = append(ds, ctDamage{
					cat:  l.name + "/payload-flip",
					desc: fmt.Sprintf("%s: byte %d of the payload of the data entry at %d (v%d) flipped", l.name, at, op.datB, op.ver),
					ns:   n, cut: cut, oldIdx: -1,
					flip: op.datB + DataEntryFixed + keyLen + at, flipKey: flipKey,
				})
			}
		}
		oldSize := ctFileSize(t, l.indexPath(b.dir, l.cur-1))
		for i := 0; i < 15; i++ {
			x := IndexHeaderSize + r.Int64N(oldSize-IndexHeaderSize)
			ds = append(ds, ctDamage{cat: l.name + "/older-index", desc: fmt.Sprintf("%s: older index file i%d cut at %d of %d", l.name, l.cur-1, x, oldSize),
				ns: n, cut: ctCut{-1, -1}, oldIdx: x, flip: -1})
		}
	}
	return ds
}

// ctAfterWrites makes a few writes on a recovered namespace (a new key, an
// overwrite, a delete) and returns the versions the namespace must hold
// afterwards.
func ctAfterWrites(t *testing.T, e *Engine, l *ctNSLog, got map[string]int, nextID uint64, checkID bool) map[string]int {
	t.Helper()
	ns := e.Namespace(l.name)
	after := map[string]int{}
	var keys []string
	for k, v := range got {
		after[k] = v
		keys = append(keys, k)
	}
	sort.Strings(keys)
	const ver = 1_000_000
	if l.seq {
		id := ns.NextID()
		if checkID && id != nextID {
			t.Errorf("%s: next id %d after recovery, want %d", l.name, id, nextID)
		}
		key, err := ns.Set(nil, ctValue(ctSeqTag(id), ver, 300), 0)
		if err != nil || binary.LittleEndian.Uint64(key) != id {
			t.Fatalf("%s: insert after recovery: %x, %v (want id %d)", l.name, key, err, id)
		}
		after[string(key)] = ver
	} else {
		k := "after-recovery"
		if _, err := ns.Set([]byte(k), ctValue(k, ver, 300), 0); err != nil {
			t.Fatalf("%s: SET after recovery: %v", l.name, err)
		}
		after[k] = ver
	}
	if len(keys) >= 2 {
		k := keys[0]
		tag := k
		if l.seq {
			tag = ctSeqTag(binary.LittleEndian.Uint64([]byte(k)))
		}
		if _, err := ns.Set([]byte(k), ctValue(tag, ver+1, 500), 0); err != nil {
			t.Fatalf("%s: overwrite after recovery: %v", l.name, err)
		}
		after[k] = ver + 1
		if err := ns.Del([]byte(keys[1]), 0); err != nil {
			t.Fatalf("%s: DEL after recovery: %v", l.name, err)
		}
		delete(after, keys[1])
	}
	return after
}

func ctExact(l *ctNSLog, vers map[string]int) map[string]ctWant {
	want := map[string]ctWant{}
	for _, op := range l.ops {
		want[op.key] = ctWant{}
	}
	want["after-recovery"] = ctWant{}
	for k, v := range vers {
		want[k] = ctWant{ver: v, damaged: v < 0}
	}
	return want
}

// TestTornFiles opens damaged copies of a data directory in-process. Each
// must open without error, serve exactly what survived the damage (no
// garbage key, every value right), accept writes, and after a close and a
// reopen hold those writes and nothing else. Subtests are the kinds of
// damage; each stops after a few failed copies.
func TestTornFiles(t *testing.T) {
	b := ctBuildBase(t)
	r := rand.New(rand.NewPCG(9, 9))
	damages := ctDamages(t, b, r)
	var cats []string
	byCat := map[string][]ctDamage{}
	for _, d := range damages {
		if byCat[d.cat] == nil {
			cats = append(cats, d.cat)
		}
		byCat[d.cat] = append(byCat[d.cat], d)
	}
	work := ctScratchDir(t)
	start := time.Now()
	for _, cat := range cats {
		t.Run(cat, func(t *testing.T) {
			failed := 0
			for _, d := range byCat[cat] {
				if !t.Run("", func(t *testing.T) { ctTornCase(t, b, d, filepath.Join(work, "copy")) }) {
					if failed++; failed >= 3 {
						t.Fatalf("stopping %s after %d failed copies", cat, failed)
					}
				}
			}
		})
	}
	t.Logf("%d damaged copies in %v", len(damages), time.Since(start).Round(time.Millisecond))
}

func ctTornCase(t *testing.T, b *ctBase, d ctDamage, dir string) {
	ctCopyTree(t, b.dir, dir)
	d.apply(t, b, dir)
	var logBuf bytes.Buffer
	e, err := Open(ctOptions(dir, ctLogger(&logBuf)))
	if err != nil && d.oldIdx >= 0 {
		// A closed index file cut short is damage no crash makes (it was
		// synced before the rotation): refusing to open is fine.
		t.Logf("%s: Open refused: %v", d.desc, err)
		return
	}
	if err != nil {
		t.Fatalf("%s: Open: %v", d.desc, err)
	}
	closed := false
	defer func() {
		if !closed {
			e.Close()
		}
	}()
	var after [2]map[string]int
	for n, l := range b.logs {
		cut := ctCut{-1, -1}
		if n == d.ns {
			cut = d.cut
		}
		want, nextID := l.ctExpect(cut)
		if n == d.ns && d.flipKey != "" {
			w := want[d.flipKey]
			w.damaged = true
			want[d.flipKey] = w
		}
		safety := n == d.ns && d.oldIdx >= 0
		got := ctCheckNS(t, e, l.name, l.seq, want, safety)
		if t.Failed() {
			t.Fatalf("%s: wrong state after recovery (namespace %s)\nlog:\n%s", d.desc, l.name, logBuf.String())
		}
		after[n] = ctAfterWrites(t, e, l, got, nextID, !safety)
	}
	// Damage in the middle of the data file is reported.
	if d.flip >= 0 && d.cut.dat < 0 && !strings.Contains(logBuf.String(), "damaged data entry") {
		t.Errorf("%s: nothing logged about the damaged entry:\n%s", d.desc, logBuf.String())
	}
	// A cut in the middle of an entry is reported.
	if x := d.cut.idx; x > IndexHeaderSize && d.flip < 0 && !ctOnBoundary(b.logs[d.ns], x, true) &&
		!strings.Contains(logBuf.String(), "dropping") {
		t.Errorf("%s: nothing logged about the dropped bytes:\n%s", d.desc, logBuf.String())
	}
	closed = true
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2, err := Open(ctOptions(dir, ctLogger(&logBuf)))
	if err != nil {
		t.Fatalf("%s: second Open: %v", d.desc, err)
	}
	defer e2.Close()
	for n, l := range b.logs {
		ctCheckNS(t, e2, l.name, l.seq, ctExact(l, after[n]), false)
		if t.Failed() {
			t.Fatalf("%s: writes made after recovery did not survive a reopen (namespace %s)\nlog:\n%s", d.desc, l.name, logBuf.String())
		}
	}
}

// ctOnBoundary reports whether off is where an entry of the active file
// starts or the file ends.
func ctOnBoundary(l *ctNSLog, off int64, index bool) bool {
	for _, op := range l.ops {
		if op.file != l.cur {
			continue
		}
		if index && (op.idxB == off || op.idxA == off) {
			return true
		}
		if !index && (op.datB == off || op.datA == off) {
			return true
		}
	}
	return false
}

// TestTornFilesServer runs a few damaged copies through the real binary:
// it starts, serves what survived over RESP, and a SET made then is there
// after a restart.
func TestTornFilesServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	b := ctBuildBase(t)
	var cases []ctDamage
	for n, l := range b.logs {
		last := l.ops[len(l.ops)-1]
		cases = append(cases,
			ctDamage{desc: l.name + ": last index entry cut in half", ns: n, cut: ctCut{(last.idxB + last.idxA) / 2, -1}, oldIdx: -1, flip: -1},
			ctDamage{desc: l.name + ": last data entry cut in half", ns: n, cut: ctCut{-1, (last.datB + last.datA) / 2}, oldIdx: -1, flip: -1},
		)
	}
	l := b.logs[0]
	last := l.ops[len(l.ops)-1]
	cases = append(cases, ctDamage{desc: "default: last payload byte flipped", ns: 0, cut: ctCut{-1, last.datB}, oldIdx: -1,
		flip: last.datA - 1})
	for _, d := range cases {
		t.Run("", func(t *testing.T) {
			dir := t.TempDir()
			ctCopyTree(t, b.dir, dir)
			d.apply(t, b, dir)
			s := zdbtest.StartIn(t, dir, "--datasize", "524288")
			c, err := ctDial(s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for n, l := range b.logs {
				cut := ctCut{-1, -1}
				if n == d.ns {
					cut = d.cut
				}
				want, _ := l.ctExpect(cut)
				if v := c.must(t, "SELECT", l.name); v.Kind != resp.KindSimple {
					t.Fatalf("SELECT %s: %s", l.name, v)
				}
				items := ctScanAll(t, c, "SCAN")
				seen := map[string]bool{}
				for _, it := range items {
					k := string(it.key)
					w, known := want[k]
					if !known || seen[k] {
						t.Errorf("%s: %s: SCAN returned %x (known %v, twice %v)", d.desc, l.name, k, known, seen[k])
						continue
					}
					seen[k] = true
					v := c.must(t, "GET", it.key)
					tag := k
					if l.seq {
						tag = ctSeqTag(binary.LittleEndian.Uint64(it.key))
					}
					vk, ver, ok := ctParseValue(v.Str)
					if v.Kind != resp.KindBulk || !ok || vk != tag || int64(len(v.Str)) != it.length {
						t.Errorf("%s: %s: GET %x: bad value %s", d.desc, l.name, k, v.String()[:min(80, len(v.String()))])
						continue
					}
					if w.lost && ver >= w.ver || !w.lost && ver != w.ver {
						t.Errorf("%s: %s: %x at v%d, want %+v", d.desc, l.name, k, ver, w)
					}
				}
				for k, w := range want {
					if w.ver != 0 && !w.lost && !seen[k] {
						t.Errorf("%s: %s: %x (v%d) missing", d.desc, l.name, k, w.ver)
					}
				}
			}
			if !strings.Contains(s.Log(), "dropping") {
				t.Errorf("%s: the server logged nothing about the damage:\n%s", d.desc, s.Log())
			}
			c.must(t, "SELECT", DefaultNamespace)
			if v := c.must(t, "SET", "after-restart", "hello"); string(v.Str) != "after-restart" {
				t.Fatalf("SET after-restart: %s", v)
			}
			c.must(t, "SELECT", ctSeqNS)
			ins := c.must(t, "SET", "", "seq-after")
			if ins.Kind != resp.KindBulk || len(ins.Str) != SeqKeyLen {
				t.Fatalf("seq insert: %s", ins)
			}
			c.Close()
			s.Restart()
			c2, err := ctDial(s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			if v := c2.must(t, "GET", "after-restart"); string(v.Str) != "hello" {
				t.Errorf("%s: GET after-restart after a restart: %s\n%s", d.desc, v, s.Log())
			}
			c2.must(t, "SELECT", ctSeqNS)
			if v := c2.must(t, "GET", ins.Str); string(v.Str) != "seq-after" {
				t.Errorf("%s: seq GET %x after a restart: %s\n%s", d.desc, ins.Str, v, s.Log())
			}
		})
	}
}

// TestCrashBetweenIndexAndFlags recreates on disk what a kill leaves when
// it lands inside a group commit, after the batch's index entries were
// written and before the in-place flag of the version the batch replaced
// (commit.go writes those patches last). The batch is SET k v2 plus more
// commands on k; the version before it, v1, keeps its entry unflagged.
// Nothing of the batch was acknowledged, so k may be v1 or the state after
// any prefix of the batch, but SCAN, GET and Len must agree: k at most
// once in SCAN, and only if GET serves it.
func TestCrashBetweenIndexAndFlags(t *testing.T) {
	type op struct {
		del bool
		val string
	}
	for _, tc := range []struct {
		name   string
		jump   bool // v1 in an older index file than the batch
		batch  []op
		others bool
	}{
		{"set-del", false, []op{{val: "v2"}, {del: true}}, true},
		{"set-set", false, []op{{val: "v2"}, {val: "v3"}}, true},
		{"set-del-set", false, []op{{val: "v2"}, {del: true}, {val: "v3"}}, true},
		{"set-set-older-file", true, []op{{val: "v2"}, {val: "v3"}}, true},
		{"set-del-older-file", true, []op{{val: "v2"}, {del: true}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var logBuf bytes.Buffer
			opts := ctOptions(dir, ctLogger(&logBuf))
			e, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			ns := e.Namespace(DefaultNamespace)
			k := []byte("k")
			if tc.others {
				ns.Set([]byte("before"), []byte("b"), 0)
			}
			if _, err := ns.Set(k, []byte("v1"), 0); err != nil {
				t.Fatal(err)
			}
			cur, err := ns.KeyCursor(k)
			if err != nil {
				t.Fatal(err)
			}
			v1File := binary.LittleEndian.Uint32(cur[1:])
			v1Off := int64(binary.LittleEndian.Uint32(cur[9:]))
			if tc.jump {
				if err := ns.Jump(); err != nil {
					t.Fatal(err)
				}
			}
			allowed := map[string]bool{"v1": true}
			for _, o := range tc.batch {
				if o.del {
					if err := ns.Del(k, 0); err != nil {
						t.Fatal(err)
					}
					allowed[""] = true
				} else {
					if _, err := ns.Set(k, []byte(o.val), 0); err != nil {
						t.Fatal(err)
					}
					allowed[o.val] = true
				}
			}
			if tc.others {
				ns.Set([]byte("after"), []byte("a"), 0)
			}
			e.Close()
			// The lost patch: v1's entry never got its deleted flag.
			path := filepath.Join(dir, "index", DefaultNamespace, "i"+strconv.Itoa(int(v1File)))
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{0}, v1Off+idxOffFlags); err != nil {
				t.Fatal(err)
			}
			f.Close()

			for round := 0; round < 2; round++ {
				e, err := Open(opts)
				if err != nil {
					t.Fatal(err)
				}
				ns := e.Namespace(DefaultNamespace)
				got := ""
				if v, err := ns.Get(k, nil); err == nil {
					got = string(v)
				} else if !errors.Is(err, ErrNotFound) {
					t.Fatalf("GET k: %v", err)
				}
				if !allowed[got] {
					t.Errorf("round %d: k = %q, want one of %v", round, got, allowed)
				}
				seen := 0
				n := 0
				var c []byte
				for {
					items, next, err := ns.Scan(c, false, 100)
					if errors.Is(err, ErrNoMoreData) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					for _, it := range items {
						n++
						if string(it.Key) == "k" {
							seen++
						}
						if _, err := ns.Get(it.Key, nil); err != nil {
							t.Errorf("round %d: SCAN returned %q, GET fails: %v", round, it.Key, err)
						}
					}
					c = next
				}
				wantSeen := 0
				if got != "" {
					wantSeen = 1
				}
				if seen != wantSeen {
					t.Errorf("round %d: SCAN returned k %d times; GET k = %q", round, seen, got)
				}
				if ns.Len() != n {
					t.Errorf("round %d: Len %d, SCAN returned %d", round, ns.Len(), n)
				}
				e.Close()
				if t.Failed() {
					t.Fatalf("log:\n%s", logBuf.String())
				}
			}
		})
	}
}
