package zdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// openWith opens an engine on dir (data/ and index/ below it) with small
// data files, after set adjusts the options.
func openWith(t *testing.T, dir string, set func(*Options)) *Engine {
	t.Helper()
	o := Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
		DataSize: MinDataSize, Logger: quietLogger()}
	if set != nil {
		set(&o)
	}
	e, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// within runs fn and fails the test if it has not returned after d: a
// deadlock shows as a failure with every goroutine's stack instead of a
// hung test binary. (Engines of such tests are closed by closeLater, which
// skips a failed test's: closing would hang on the same lock.)
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%s did not return within %v (deadlock?)\n%s", what, d, buf)
	}
}

// closeLater closes e when the test ends, unless it failed.
func closeLater(t *testing.T, e *Engine) {
	t.Cleanup(func() {
		if !t.Failed() {
			if err := e.Close(); err != nil {
				t.Error(err)
			}
		}
	})
}

// eventLog is an in-process Hooks that records what it receives.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(ev Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *eventLog) list() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// TestEventKinds: every kind has its 0-db hook name, the blocking ones
// are those 0-db waits for, and Args are 0-db's hook arguments.
func TestEventKinds(t *testing.T) {
	want := map[EventKind]struct {
		name     string
		blocking bool
	}{
		EventNamespacesInit:    {"namespaces-init", true},
		EventReady:             {"ready", true},
		EventFileClosed:        {"jump-data", false},
		EventIndexChanged:      {"jump-index", true},
		EventNamespaceCreated:  {"namespace-created", false},
		EventNamespaceUpdated:  {"namespace-updated", false},
		EventNamespaceDeleted:  {"namespace-deleted", false},
		EventNamespaceReloaded: {"namespace-reloaded", false},
		EventNamespaceClosing:  {"namespace-closing", false},
		EventFileRetired:       {"file-retired", false},
		EventMissingData:       {"missing-data", true},
		EventClose:             {"close", true},
		EventCrash:             {"crash", false},
	}
	for k := EventNamespacesInit; k <= EventCrash; k++ {
		w, ok := want[k]
		if !ok {
			t.Fatalf("kind %d not covered", k)
		}
		if k.String() != w.name || k.Blocking() != w.blocking {
			t.Errorf("kind %d: %q blocking %v, want %q %v", k, k.String(), k.Blocking(), w.name, w.blocking)
		}
	}
	if s := EventKind(99).String(); s != "EventKind(99)" {
		t.Errorf("unknown kind: %q", s)
	}
	args := []struct {
		ev   Event
		want []string
	}{
		{Event{Kind: EventNamespacesInit, IndexDir: "/i", DataDir: "/d"}, []string{"/i", "/d"}},
		{Event{Kind: EventReady}, []string{}},
		{Event{Kind: EventFileClosed, Namespace: "n", FileID: 3, Path: "/d/n/d3", NewPath: "/d/n/d4"}, []string{"/d/n/d3", "/d/n/d4"}},
		{Event{Kind: EventIndexChanged, Namespace: "n", FileID: 3, Path: "/i/n/i3", NewPath: "/i/n/i4", Dirty: []uint32{0, 3}}, []string{"/i/n/i3", "/i/n/i4", "0 3"}},
		{Event{Kind: EventNamespaceCreated, Namespace: "n"}, []string{"n"}},
		{Event{Kind: EventNamespaceClosing, Namespace: "n", IndexDir: "/i/n", DataDir: "/d/n", Dirty: []uint32{1}}, []string{"n", "/i/n", "/d/n", "1"}},
		{Event{Kind: EventFileRetired, Namespace: "n", FileID: 2, Path: "/d/n/d2"}, []string{"/d/n/d2"}},
		{Event{Kind: EventMissingData, Namespace: "n", FileID: 2, Path: "/d/n/d2"}, []string{"/d/n/d2"}},
		{Event{Kind: EventCrash}, []string{}},
	}
	for _, a := range args {
		if got := a.ev.Args(); !reflect.DeepEqual(got, a.want) {
			t.Errorf("%s args %q, want %q", a.ev.Kind, got, a.want)
		}
	}
}

// TestHooksRunOutsideTheLock: the rotation that a SET triggers (SetDeferred
// → maybeJump) delivers jump-index and jump-data after the namespace lock
// is released: a hook that reads the namespace (Len, Get) and even writes
// to it — raising a second rotation from inside the hook — does not
// deadlock, and the events arrive in order with their fields.
func TestHooksRunOutsideTheLock(t *testing.T) {
	dir := t.TempDir()
	var log eventLog
	var e *Engine
	big := func(c byte) []byte { return bytes.Repeat([]byte{c}, 300<<10) }
	wroteFromHook := false
	hook := HookFunc(func(ctx context.Context, ev Event) error {
		if ev.Namespace != DefaultNamespace {
			return nil
		}
		log.add(ev)
		ns := e.Namespace(DefaultNamespace)
		// Both need the namespace's read lock.
		if ns.Len() == 0 {
			return errors.New("no keys seen from the hook")
		}
		if v, err := ns.Get([]byte("a"), nil); err != nil || !bytes.Equal(v, big('a')) {
			return fmt.Errorf("GET a from the hook: %d bytes, %v", len(v), err)
		}
		if ev.Kind == EventFileClosed && !wroteFromHook {
			// d1 holds b: this write rotates again, from inside a hook.
			wroteFromHook = true
			if _, err := ns.Set([]byte("c"), big('c'), 0); err != nil {
				return fmt.Errorf("SET c from the hook: %v", err)
			}
		}
		return nil
	})
	e = openWith(t, dir, func(o *Options) { o.Hooks = hook })
	closeLater(t, e)
	ns := e.Namespace(DefaultNamespace)
	within(t, 20*time.Second, "SET with a rotation and a hook using the namespace", func() {
		for _, k := range []string{"a", "b"} {
			if _, err := ns.Set([]byte(k), big(k[0]), 0); err != nil {
				t.Error(err)
			}
		}
	})
	idx, data := filepath.Join(dir, "index", DefaultNamespace), filepath.Join(dir, "data", DefaultNamespace)
	want := []Event{
		{Kind: EventIndexChanged, Namespace: DefaultNamespace, FileID: 0, Path: filepath.Join(idx, "i0"), NewPath: filepath.Join(idx, "i1"), Dirty: []uint32{0}},
		{Kind: EventFileClosed, Namespace: DefaultNamespace, FileID: 0, Path: filepath.Join(data, "d0"), NewPath: filepath.Join(data, "d1")},
		{Kind: EventIndexChanged, Namespace: DefaultNamespace, FileID: 1, Path: filepath.Join(idx, "i1"), NewPath: filepath.Join(idx, "i2"), Dirty: []uint32{1}},
		{Kind: EventFileClosed, Namespace: DefaultNamespace, FileID: 1, Path: filepath.Join(data, "d1"), NewPath: filepath.Join(data, "d2")},
	}
	if got := log.list(); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got %+v\nwant %+v", got, want)
	}
	if v, err := ns.Get([]byte("c"), nil); err != nil || !bytes.Equal(v, big('c')) {
		t.Errorf("GET c written by the hook: %d bytes, %v", len(v), err)
	}
	// Each jump-index answered nil: only i2, which got c after the last
	// report, is dirty.
	if d := ns.DirtyIndexes(false); !reflect.DeepEqual(d, []uint32{2}) {
		t.Errorf("dirty after successful jump-index events: %v, want [2]", d)
	}
}

// TestHookEventOrderUnderConcurrentWriters: with several writers rotating
// the same namespace, its rotation events are delivered one at a time and
// in file order, jump-index before jump-data.
func TestHookEventOrderUnderConcurrentWriters(t *testing.T) {
	var mu sync.Mutex
	var got []string
	inHook := 0
	hook := HookFunc(func(ctx context.Context, ev Event) error {
		mu.Lock()
		inHook++
		overlap := inHook > 1
		got = append(got, fmt.Sprintf("%s %d", ev.Kind, ev.FileID))
		mu.Unlock()
		time.Sleep(time.Millisecond) // widen the window for an overlap
		mu.Lock()
		inHook--
		mu.Unlock()
		if overlap {
			return errors.New("two events delivered at once")
		}
		return nil
	})
	e := openWith(t, t.TempDir(), func(o *Options) {
		o.Hooks = HookFunc(func(ctx context.Context, ev Event) error {
			if ev.Kind == EventIndexChanged || ev.Kind == EventFileClosed {
				return hook(ctx, ev)
			}
			return nil
		})
	})
	closeLater(t, e)
	ns := e.Namespace(DefaultNamespace)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				if _, err := ns.Set([]byte(fmt.Sprintf("w%d-%d", w, i)), bytes.Repeat([]byte{byte(i)}, 200<<10), 0); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	within(t, 60*time.Second, "concurrent writers", wg.Wait)
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 8 {
		t.Fatalf("only %d rotation events: %v", len(got), got)
	}
	for i, s := range got {
		want := fmt.Sprintf("jump-index %d", i/2)
		if i%2 == 1 {
			want = fmt.Sprintf("jump-data %d", i/2)
		}
		if s != want {
			t.Fatalf("event %d is %q, want %q; all: %v", i, s, want, got)
		}
	}
	if d := ns.DirtyIndexes(false); len(d) > 1 {
		// Only the active index file can have changed since the last jump.
		t.Errorf("dirty ids left: %v", d)
	}
}

// TestIndexChangedResetsOnlyReported: a jump-index answered nil forgets
// exactly the ids it reported, and an id changed again while the hook ran
// stays dirty; an error puts the ids back; INDEX DIRTY RESET while the hook
// runs is not undone by its answer.
func TestIndexChangedResetsOnlyReported(t *testing.T) {
	type answer struct{ err error }
	release := make(chan answer)
	entered := make(chan Event)
	e := openWith(t, t.TempDir(), func(o *Options) {
		o.Hooks = HookFunc(func(ctx context.Context, ev Event) error {
			if ev.Kind != EventIndexChanged {
				return nil
			}
			entered <- ev
			return (<-release).err
		})
	})
	closeLater(t, e)
	ns := e.Namespace(DefaultNamespace)
	set := func(k string) {
		t.Helper()
		if _, err := ns.Set([]byte(k), []byte("v-"+k), 0); err != nil {
			t.Fatal(err)
		}
	}
	// jump starts the rotation in the background and returns the event
	// the hook received; the hook then waits for an answer.
	jump := func() (Event, chan error) {
		done := make(chan error, 1)
		go func() { done <- ns.Jump() }()
		select {
		case ev := <-entered:
			return ev, done
		case <-time.After(10 * time.Second):
			t.Fatal("no jump-index event")
		}
		return Event{}, nil
	}
	dirty := func(want ...uint32) {
		t.Helper()
		if got := ns.DirtyIndexes(false); !reflect.DeepEqual(got, append([]uint32{}, want...)) {
			t.Errorf("dirty = %v, want %v", got, want)
		}
	}

	set("k") // i0
	ev, done := jump()
	if !reflect.DeepEqual(ev.Dirty, []uint32{0}) {
		t.Fatalf("reported %v, want [0]", ev.Dirty)
	}
	dirty(0) // still dirty while the hook runs
	// While the hook runs (no lock held): k's entry in i0 is flagged.
	within(t, 10*time.Second, "DEL while jump-index runs", func() {
		if err := ns.Del([]byte("k"), 0); err != nil {
			t.Error(err)
		}
	})
	release <- answer{nil}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Changed after the report: not reset (i0: k's flag; i1: the DEL's
	// tombstone entry).
	dirty(0, 1)

	// An error puts the reported ids back.
	set("x") // i1
	ev, done = jump()
	if !reflect.DeepEqual(ev.Dirty, []uint32{0, 1}) {
		t.Fatalf("reported %v, want [0 1]", ev.Dirty)
	}
	release <- answer{errors.New("upload failed")}
	<-done
	dirty(0, 1)

	// Success forgets them.
	ev, done = jump()
	release <- answer{nil}
	<-done
	dirty()

	// A reset while the hook runs, then a failure: the reset stands.
	set("y") // i3
	ev, done = jump()
	ns.DirtyIndexes(true)
	release <- answer{errors.New("upload failed")}
	<-done
	dirty()
}

// TestMultiHooks: every member gets every event; a blocking event fails
// when one member fails; Engine.Hooks lists the runs of the exec member;
// the exec hook gets file-retired with the file's path.
func TestMultiHooks(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "hook.log")
	script := filepath.Join(dir, "hook.sh")
	// One write per run: runs in the background must not interleave.
	body := fmt.Sprintf("#!/bin/sh\nline=$(printf '%%s|' \"$@\")\necho \"$line\" >> '%s'\n", logFile)
	syscall.ForkLock.RLock() // no child inherits the file open for writing (ETXTBSY)
	err := os.WriteFile(script, []byte(body), 0o755)
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	exec := NewExecHooks(script, "tcp://127.0.0.1:1", quietLogger())
	var a, b eventLog
	failIndex := true
	e := openWith(t, dir, func(o *Options) {
		o.Hooks = MultiHooks{
			HookFunc(func(ctx context.Context, ev Event) error { a.add(ev); return nil }),
			nil,
			exec,
			HookFunc(func(ctx context.Context, ev Event) error {
				b.add(ev)
				if ev.Kind == EventIndexChanged && failIndex {
					return errors.New("b refuses")
				}
				return nil
			}),
		}
	})
	ns := e.Namespace(DefaultNamespace)
	if _, err := ns.Set([]byte("k"), []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := ns.Jump(); err != nil {
		t.Fatal(err)
	}
	if d := ns.DirtyIndexes(false); !reflect.DeepEqual(d, []uint32{0}) {
		t.Errorf("one member failed jump-index, yet dirty = %v", d)
	}
	if err := e.CreateNamespace("x"); err != nil {
		t.Fatal(err)
	}
	// What compaction raises when it removes a data file.
	retired := ns.dataPath(0)
	e.emit(Event{Kind: EventFileRetired, Namespace: DefaultNamespace, FileID: 0, Path: retired})
	if err := e.Announce(context.Background(), EventIndexChanged); err == nil {
		t.Error("Announce accepted an engine event")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := exec.Wait(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	kinds := func(l *eventLog) []string {
		var s []string
		for _, ev := range l.list() {
			s = append(s, ev.Kind.String())
		}
		return s
	}
	wantKinds := []string{"namespaces-init", "jump-index", "jump-data", "namespace-created", "file-retired", "namespace-closing", "namespace-closing"}
	if !reflect.DeepEqual(kinds(&a), wantKinds) || !reflect.DeepEqual(kinds(&b), wantKinds) {
		t.Errorf("members got\n%v\n%v\nwant %v", kinds(&a), kinds(&b), wantKinds)
	}
	raw, _ := os.ReadFile(logFile)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != len(wantKinds) {
		t.Fatalf("exec hook ran %d times, want %d:\n%s", len(lines), len(wantKinds), raw)
	}
	if want := "file-retired|tcp://127.0.0.1:1|" + retired + "|"; !containsLine(lines, want) {
		t.Errorf("no %q in the exec hook's log:\n%s", want, raw)
	}
	runs := e.Hooks()
	if len(runs) != len(wantKinds) {
		t.Fatalf("Engine.Hooks lists %d runs, want %d", len(runs), len(wantKinds))
	}
	for _, r := range runs {
		if r.PID <= 0 || r.Finished == 0 || r.Status != 0 {
			t.Errorf("run %+v", r)
		}
	}
}

// TestExecHooksVerdict: a blocking event's non-zero exit is a
// *HookExitError with the status; a non-blocking one returns nil at once;
// a program that cannot start is an error.
func TestExecHooksVerdict(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "hook.sh")
	syscall.ForkLock.RLock()
	err := os.WriteFile(script, []byte("#!/bin/sh\nexit 7\n"), 0o755)
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	h := NewExecHooks(script, "unix:///x", quietLogger())
	ctx := context.Background()
	var xe *HookExitError
	if err := h.Handle(ctx, Event{Kind: EventReady}); !errors.As(err, &xe) || xe.Status != 7 || xe.Event != "ready" {
		t.Errorf("ready exiting 7: %v", err)
	}
	if err := h.Handle(ctx, Event{Kind: EventFileClosed, Path: "a", NewPath: "b"}); err != nil {
		t.Errorf("jump-data: %v", err)
	}
	if err := h.Wait(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	runs := h.Runs()
	if len(runs) != 2 || runs[1].Event != "jump-data" || runs[1].Status != 7 || !reflect.DeepEqual(runs[1].Args, []string{"a", "b"}) {
		t.Errorf("runs %+v", runs)
	}
	if err := NewExecHooks(filepath.Join(dir, "absent"), "", nil).Handle(ctx, Event{Kind: EventClose}); err == nil {
		t.Error("a missing hook program is not an error")
	}
}

// TestAnnounceReady: an in-process hook failing ready is the error the
// program stops on; without hooks Announce is a no-op.
func TestAnnounceReady(t *testing.T) {
	e := openWith(t, t.TempDir(), func(o *Options) {
		o.Hooks = HookFunc(func(ctx context.Context, ev Event) error {
			if ev.Kind == EventReady {
				return errors.New("not ready")
			}
			return nil
		})
	})
	if err := e.Announce(context.Background(), EventReady); err == nil || err.Error() != "not ready" {
		t.Errorf("Announce(ready) = %v", err)
	}
	e.Close()
	e = openWith(t, t.TempDir(), nil)
	defer e.Close()
	if err := e.Announce(context.Background(), EventReady); err != nil {
		t.Errorf("without hooks: %v", err)
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
