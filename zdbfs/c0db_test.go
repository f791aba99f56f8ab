package zdbfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"qss/internal/fake0db"
	"qss/internal/resp"
	"qss/zdb/client"
)

// fakeStore is a ClientStore on one namespace of the fake 0-db, probed
// (as cmd/zdbfs does) when probe is set.
func fakeStore(t *testing.T, f *fake0db.Server, ns string, probe bool) *ClientStore {
	t.Helper()
	c, err := client.New(context.Background(), client.Options{Addr: f.Addr(), Namespace: ns,
		DialTimeout: time.Second, IOTimeout: 2 * time.Second, PoolSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := NewClientStore(c)
	if probe {
		if err := s.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// stallOps are SETs of exactly 1 KiB each on the wire: eight of them fill
// 0-db's read buffer and end on a request boundary.
func stallOps(n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		key := fmt.Appendf(nil, "k%07d", i)
		// *3 $3 SET $8 key $v value: 35 bytes of framing around 989.
		ops[i] = Op{Key: key, Value: bytes.Repeat([]byte{byte(i)}, 1024-35)}
	}
	var buf bytes.Buffer
	w := resp.NewWriter(&buf, 4096)
	w.Command([]byte("SET"), ops[0].Key, ops[0].Value)
	w.Flush()
	if buf.Len() != 1024 {
		panic(fmt.Sprintf("stallOps: request is %d bytes", buf.Len()))
	}
	return ops
}

// TestClientStoreC0DBStall: against a server with 0-db's read stall, a
// pipelined batch stalls (the fake is faithful), and a probed ClientStore
// recognises 0-db and writes and reads the same batch whole.
func TestClientStoreC0DBStall(t *testing.T) {
	f := fake0db.Start(t)
	ctx := context.Background()
	ops := stallOps(64)

	naive := fakeStore(t, f, "naive", false)
	if !naive.Pipelining() {
		t.Fatal("an unprobed store should pipeline")
	}
	if err := naive.Apply(ctx, ops); err == nil {
		t.Fatal("a pipelined batch went through the fake 0-db: it does not stall as 0-db does")
	}
	if f.Stalls() == 0 {
		t.Fatal("the pipelined batch failed without the fake's stall")
	}

	for _, par := range []int{1, 4} {
		s := fakeStore(t, f, fmt.Sprintf("probed%d", par), true)
		s.Parallel = par
		if s.Pipelining() {
			t.Fatal("Probe did not recognise the C 0-db")
		}
		before := f.Stalls()
		if err := s.Apply(ctx, ops); err != nil {
			t.Fatalf("Parallel %d: Apply on 0-db: %v", par, err)
		}
		keys := make([][]byte, 0, len(ops)+1)
		for _, op := range ops {
			keys = append(keys, op.Key)
		}
		keys = append(keys, []byte("missing"))
		vs, err := s.GetMany(ctx, keys)
		if err != nil {
			t.Fatalf("GetMany on 0-db: %v", err)
		}
		for i, op := range ops {
			if !bytes.Equal(vs[i], op.Value) {
				t.Fatalf("key %s: read %d bytes back, want %d", op.Key, len(vs[i]), len(op.Value))
			}
		}
		if vs[len(ops)] != nil {
			t.Fatal("a missing key read back as a value")
		}
		if n := f.Stalls() - before; n != 0 {
			t.Fatalf("%d stalls with the probed store", n)
		}
	}

	// Our own zdb is recognised as safe to pipeline.
	if !PipelineSafe(map[string]string{"server_revision": "2.0.7-go"}) || PipelineSafe(map[string]string{}) {
		t.Fatal("PipelineSafe: wrong verdict")
	}
}

// TestMountOnC0DB untars a small tree into a mount whose namespaces are on
// the fake 0-db (stores probed as cmd/zdbfs does), unmounts, remounts and
// compares everything; no connection may have stalled.
func TestMountOnC0DB(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatal("the tar command is needed (Debian package tar)")
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(out))
	srcParent := filepath.Join(goroot, "src")
	const sub = "encoding" // about 200 files, 5 MiB
	want := map[string]fileFacts{}
	treeFacts(t, filepath.Join(srcParent, sub), sub, want)

	f := fake0db.Start(t)
	b := &backend{kind: "fake0db"}
	b.meta = fakeStore(t, f, "meta", true)
	data := fakeStore(t, f, "data", true)
	data.Parallel = 4 // as cmd/zdbfs
	b.data = data
	mt := mountOn(t, b, Config{})
	create := exec.Command("tar", "-cf", "-", "-C", srcParent, sub)
	extract := exec.Command("tar", "-xf", "-", "-C", mt.Dir)
	pipe, err := create.StdoutPipe()
	must(t, err)
	extract.Stdin = pipe
	var xerr bytes.Buffer
	extract.Stderr = &xerr
	must(t, extract.Start())
	must(t, create.Run())
	if err := extract.Wait(); err != nil {
		t.Fatalf("tar -x into a mount on 0-db: %v\n%s", err, xerr.String())
	}
	// A file whose blocks, trimmed of their zero tails, make SET requests
	// of exactly 64 KiB: 0-db's 8 KiB reads then end on a request
	// boundary with the next block's request pending, every time.
	aligned := alignedBlocks(t, 48)
	must(t, os.WriteFile(filepath.Join(mt.Dir, "aligned"), aligned, 0o644))
	must(t, exec.Command("sync", "-f", mt.Dir).Run())
	mt.unmount()
	mt = mountOn(t, b, Config{})
	got := map[string]fileFacts{}
	treeFacts(t, filepath.Join(mt.Dir, sub), sub, got)
	for p, w := range want { // tar as this user: owners are ours, not the source's
		g := got[p]
		w.uid, w.gid = g.uid, g.gid
		want[p] = w
	}
	compareFacts(t, "after remount on 0-db", want, got)
	if back, err := os.ReadFile(filepath.Join(mt.Dir, "aligned")); err != nil || !bytes.Equal(back, aligned) {
		t.Fatalf("aligned file after remount: %d bytes, err %v; want its %d bytes", len(back), err, len(aligned))
	}
	mt.unmount()
	if n := f.Stalls(); n != 0 {
		t.Fatalf("%d connections stalled", n)
	}
}

// alignedBlocks returns n blocks of file data whose SET requests (block
// key, value trimmed of trailing zeros) are exactly 64 KiB each.
func alignedBlocks(t *testing.T, n int) []byte {
	t.Helper()
	key := blockKey(1000, 0) // block keys have one length
	size := func(l int) int {
		var buf bytes.Buffer
		w := resp.NewWriter(&buf, 1<<17)
		w.Command([]byte("SET"), key, make([]byte, l))
		w.Flush()
		return buf.Len()
	}
	l := BlockSize
	for l > 0 && size(l) > 64<<10 {
		l--
	}
	if size(l) != 64<<10 {
		t.Fatalf("no value length makes a 64 KiB request")
	}
	out := make([]byte, n*BlockSize)
	for b := range n {
		for i := range l {
			out[b*BlockSize+i] = byte(1 + (b+i)%251)
		}
	}
	return out
}

// TestUnmountZdbHangs: when zdb stops answering with dirty data in the
// cache, a clean unmount gives up after the mount's flush timeout with an
// error, instead of waiting for ever.
func TestUnmountZdbHangs(t *testing.T) {
	f := fake0db.Start(t)
	b := &backend{kind: "fake0db"}
	b.meta = fakeStore(t, f, "meta", true)
	b.data = fakeStore(t, f, "data", true)
	cfg := Config{FlushAge: time.Hour, SyncClose: false}
	cfg.Meta, cfg.Data = b.meta, b.data
	cfg.Logger = quietLogger()
	ctx := context.Background()
	fs, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := MountFS(ctx, fs, dir, MountOptions{CloseTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mt := &mounted{t: t, m: m, Dir: dir}
	t.Cleanup(func() { mt.forceUnmount() })
	for i := range 20 {
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprint("f", i)), bytes.Repeat([]byte{1}, 200<<10), 0o644))
	}
	f.Freeze()
	start := time.Now()
	err = m.Unmount()
	took := time.Since(start)
	mt.m = nil
	if err == nil {
		t.Fatal("unmount with zdb hung reported success")
	}
	if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "flush") {
		t.Logf("unmount error: %v", err)
	}
	if took > 15*time.Second {
		t.Fatalf("unmount took %v with a 3s flush timeout", took)
	}
	if isMountedAt(dir) {
		t.Fatal("still mounted after the unmount gave up")
	}
	t.Logf("unmount gave up after %v: %v", took.Round(time.Millisecond), err)
}

func isMountedAt(dir string) bool {
	m, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(m), " "+dir+" ")
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGoFuseLogRouted: go-fuse's own log lines — its request log with
// Debug, and diagnostics such as "trySplice … max pipe size" — go to the
// filesystem's logger at debug level, not to the standard log.
func TestGoFuseLogRouted(t *testing.T) {
	var logs syncBuffer
	b := newBackend(t, "engine")
	cfg := Config{Meta: b.meta, Data: b.data,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ctx := context.Background()
	fs, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := MountFS(ctx, fs, dir, MountOptions{Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	mt := &mounted{t: t, m: m, Dir: dir}
	t.Cleanup(func() { mt.forceUnmount() })
	must(t, os.WriteFile(mt.path("f"), []byte("data"), 0o644))
	mt.unmount()
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "CREATE") && strings.Contains(l, "rx ") {
			line = l
			break
		}
	}
	if line == "" {
		t.Fatalf("no go-fuse request line in the filesystem's log:\n%s", logs.String())
	}
	if !strings.Contains(line, "level=DEBUG") {
		t.Fatalf("go-fuse's line is not at debug level: %s", line)
	}
}
