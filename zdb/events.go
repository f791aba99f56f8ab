package zdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
)

// Events and the Hooks interface.
//
// The engine reports what happens to its files through Options.Hooks: the
// events of 0-db's --hook contract (docs/zdb.md, "Hooks"), with typed
// fields instead of argv, plus EventFileRetired. A program that embeds the
// engine (qsfs) implements Hooks in-process; zdb's --hook executable is one
// implementation among others (ExecHooks).
//
// Guarantees, relied upon by implementations:
//   - Handle is called synchronously and never while a namespace lock is
//     held: Handle may call any method of the engine and its namespaces (a
//     write from Handle may even raise further events; they are delivered
//     after Handle returns).
//   - Per namespace, the events raised under its lock (EventIndexChanged,
//     EventFileClosed) are delivered one at a time, in the order they were
//     raised, by the goroutine that raised them once it unlocked, or by the
//     one already delivering that namespace's events. The other events are
//     delivered by the goroutine that raised them.
//   - For the blocking kinds (EventKind.Blocking) the error matters as in
//     0-db: EventReady aborts startup on error, EventIndexChanged resets the
//     reported dirty index ids on nil, EventMissingData retries the read
//     once on nil. For the other kinds the error is logged and ignored, and
//     an implementation that does slow work for them should hand it off.

// EventKind says what happened. Each kind is one 0-db hook event (String).
type EventKind int

// The event kinds, in the order of 0-db's hook documentation.
const (
	// EventNamespacesInit: the roots are locked, the namespaces not loaded
	// yet. Fields: IndexDir, DataDir (the roots). Blocking (error ignored).
	EventNamespacesInit EventKind = iota + 1
	// EventReady: the embedding program is ready to serve (raised by the
	// program through Engine.Announce). No fields. Blocking: an error
	// aborts startup.
	EventReady
	// EventFileClosed (0-db's jump-data): rotation closed data file FileID;
	// it is complete, fsynced and immutable from now on, the upload point.
	// Fields: Namespace, FileID, Path (the closed d<N>), NewPath (the new
	// active d<N+1>). Not blocking.
	EventFileClosed
	// EventIndexChanged (0-db's jump-index): rotation closed index file
	// FileID. Fields: Namespace, FileID, Path (the closed i<N>), NewPath
	// (the new i<N+1>), Dirty (index file ids changed since the last
	// reset, in ascending order). Blocking: nil removes exactly the ids in
	// Dirty from the dirty set, unless they changed again meanwhile.
	EventIndexChanged
	// EventNamespaceCreated (NSNEW). Fields: Namespace. Not blocking.
	EventNamespaceCreated
	// EventNamespaceUpdated (NSSET). Fields: Namespace. Not blocking.
	EventNamespaceUpdated
	// EventNamespaceDeleted (NSDEL), after its files are removed. Fields:
	// Namespace. Not blocking.
	EventNamespaceDeleted
	// EventNamespaceReloaded (RELOAD). Fields: Namespace. Not blocking.
	EventNamespaceReloaded
	// EventNamespaceClosing: Engine.Close is about to close the namespace.
	// Fields: Namespace, IndexDir, DataDir (the namespace's directories),
	// Dirty. Not blocking.
	EventNamespaceClosing
	// EventFileRetired (ours, exec event "file-retired"): compaction
	// removed data file FileID, or rewrote index file FileID (Index set);
	// a backup of the old content is no longer needed by the live files.
	// Fields: Namespace, FileID, Path, Index. Not blocking.
	EventFileRetired
	// EventMissingData: a read needs closed data file FileID, which is not
	// on the local disk, and no Fetcher is configured. Fields: Namespace,
	// FileID, Path (where the file belongs). Blocking: nil means the file
	// is back and the read is retried once; concurrent readers of the same
	// file share one event.
	EventMissingData
	// EventClose: the program shuts down cleanly (Engine.Announce). No
	// fields. Blocking (error ignored).
	EventClose
	// EventCrash: the program got a fatal signal (Engine.Announce). No
	// fields. Not blocking.
	EventCrash
)

var eventNames = [...]string{
	EventNamespacesInit:    "namespaces-init",
	EventReady:             "ready",
	EventFileClosed:        "jump-data",
	EventIndexChanged:      "jump-index",
	EventNamespaceCreated:  "namespace-created",
	EventNamespaceUpdated:  "namespace-updated",
	EventNamespaceDeleted:  "namespace-deleted",
	EventNamespaceReloaded: "namespace-reloaded",
	EventNamespaceClosing:  "namespace-closing",
	EventFileRetired:       "file-retired",
	EventMissingData:       "missing-data",
	EventClose:             "close",
	EventCrash:             "crash",
}

// String is the kind's 0-db hook event name (argv[1] of the --hook
// program); EventFileRetired is ours: "file-retired".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Blocking reports whether the engine waits for the outcome of the event
// and acts on it (0-db runs these hooks and waits for their exit status;
// the others run in the background).
func (k EventKind) Blocking() bool {
	switch k {
	case EventNamespacesInit, EventReady, EventIndexChanged, EventMissingData, EventClose:
		return true
	}
	return false
}

// Event is one thing that happened. Which fields are set depends on Kind
// (see the EventKind constants); the others are zero.
type Event struct {
	Kind      EventKind
	Namespace string   // the namespace concerned
	FileID    uint32   // the file concerned (FileClosed, IndexChanged, FileRetired, MissingData)
	Path      string   // that file's path
	NewPath   string   // the file rotation started (FileClosed, IndexChanged)
	Dirty     []uint32 // dirty index file ids, ascending (IndexChanged, NamespaceClosing)
	IndexDir  string   // index root (NamespacesInit) or the namespace's index directory (NamespaceClosing)
	DataDir   string   // data root (NamespacesInit) or the namespace's data directory (NamespaceClosing)
	Index     bool     // FileRetired: Path is an index file (rewritten), not a data file (removed)
}

// Args are the event's arguments to a 0-db --hook program, after the event
// name and the instance id.
func (ev Event) Args() []string {
	switch ev.Kind {
	case EventNamespacesInit:
		return []string{ev.IndexDir, ev.DataDir}
	case EventFileClosed:
		return []string{ev.Path, ev.NewPath}
	case EventIndexChanged:
		return []string{ev.Path, ev.NewPath, dirtyString(ev.Dirty)}
	case EventNamespaceCreated, EventNamespaceUpdated, EventNamespaceDeleted, EventNamespaceReloaded:
		return []string{ev.Namespace}
	case EventNamespaceClosing:
		return []string{ev.Namespace, ev.IndexDir, ev.DataDir, dirtyString(ev.Dirty)}
	case EventFileRetired, EventMissingData:
		return []string{ev.Path}
	}
	return []string{}
}

// Hooks receives the engine's events (Options.Hooks). See the guarantees
// above: Handle runs outside every namespace lock, and its error matters
// only for the blocking kinds.
type Hooks interface {
	Handle(ctx context.Context, ev Event) error
}

// HookFunc adapts a function to Hooks.
type HookFunc func(ctx context.Context, ev Event) error

// Handle calls f.
func (f HookFunc) Handle(ctx context.Context, ev Event) error { return f(ctx, ev) }

// MultiHooks delivers every event to each of its hooks in turn (nil ones
// are skipped). The result is every error joined: a blocking event
// succeeds only when all of them succeed.
type MultiHooks []Hooks

// Handle implements Hooks.
func (m MultiHooks) Handle(ctx context.Context, ev Event) error {
	var errs []error
	for _, h := range m {
		if h == nil {
			continue
		}
		if err := h.Handle(ctx, ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Runs lists the recent runs of every member that records them (HOOKS).
func (m MultiHooks) Runs() []HookRun {
	var out []HookRun
	for _, h := range m {
		if r, ok := h.(interface{ Runs() []HookRun }); ok {
			out = append(out, r.Runs()...)
		}
	}
	return out
}

// emit delivers ev to the configured hooks and returns their verdict; it
// is a no-op without hooks. The caller must hold no namespace lock (use
// Namespace.queueEvent under the lock instead). A failure of a
// non-blocking event is logged here and may be ignored by the caller.
func (e *Engine) emit(ev Event) error {
	if e.hooks == nil {
		return nil
	}
	err := e.hooks.Handle(e.ctx, ev)
	if err != nil && !errors.Is(err, ErrKeepDirty) {
		e.log.Warn("hook failed", "event", ev.Kind.String(), "namespace", ev.Namespace, "err", err)
	}
	return err
}

// ErrKeepDirty is an answer to EventIndexChanged that keeps the reported
// ids dirty without being logged as a failure: a program that snapshots
// changed index files itself (Namespace.Cut) answers it.
var ErrKeepDirty = errors.New("zdb: index files stay dirty")

// Announce delivers an event that only the embedding program sees:
// EventReady (an error aborts startup), EventClose or EventCrash.
func (e *Engine) Announce(ctx context.Context, kind EventKind) error {
	switch kind {
	case EventReady, EventClose, EventCrash:
	default:
		return fmt.Errorf("zdb: %s is raised by the engine, not announced", kind)
	}
	if e.hooks == nil {
		return nil
	}
	err := e.hooks.Handle(ctx, Event{Kind: kind})
	if err != nil {
		e.log.Warn("hook failed", "event", kind.String(), "err", err)
	}
	return err
}

// eventQueue holds the events a namespace raised under its lock until the
// goroutine that raised them has unlocked (Namespace.deliverEvents).
type eventQueue struct {
	pending  atomic.Bool // the queue is not empty: the fast path of deliverEvents
	mu       sync.Mutex
	list     []queuedEvent
	draining bool // a goroutine is delivering; it will deliver what is added meanwhile
}

// queuedEvent is an event with what to do once it was handled: done runs
// after Handle returns, outside every lock, with its error.
type queuedEvent struct {
	ev   Event
	done func(error)
}

// queueEvent queues ev for delivery once the namespace is unlocked; done,
// if not nil, gets the hooks' verdict. The caller holds ns.mu and must
// call ns.deliverEvents after unlocking it (every public method that can
// raise events does, with `defer ns.deliverEvents()` before locking). A
// no-op without hooks.
func (ns *Namespace) queueEvent(ev Event, done func(error)) {
	if ns.eng.hooks == nil {
		return
	}
	q := &ns.events
	q.mu.Lock()
	q.list = append(q.list, queuedEvent{ev, done})
	q.pending.Store(true)
	q.mu.Unlock()
}

// deliverEvents delivers the queued events, in order. The caller holds no
// namespace lock. When another goroutine is already delivering (or this
// one is, and a hook raised more events), it returns at once: that
// delivery loop picks the new events up, which keeps the order and lets a
// hook use the namespace.
func (ns *Namespace) deliverEvents() {
	q := &ns.events
	if !q.pending.Load() {
		return
	}
	q.mu.Lock()
	if q.draining {
		q.mu.Unlock()
		return
	}
	q.draining = true
	defer func() {
		// A hook that panics must not leave the queue stuck.
		if r := recover(); r != nil {
			q.mu.Lock()
			q.draining = false
			q.mu.Unlock()
			panic(r)
		}
	}()
	for len(q.list) > 0 {
		batch := q.list
		q.list = nil
		q.mu.Unlock()
		for _, qe := range batch {
			err := ns.eng.emit(qe.ev)
			if qe.done != nil {
				qe.done(err)
			}
		}
		q.mu.Lock()
	}
	q.pending.Store(false)
	q.draining = false
	q.mu.Unlock()
}

// queueJumpEvents queues the events of a rotation that closed file old, in
// 0-db's order: jump-index, then jump-data. The dirty ids that jump-index
// reports move to dirtyFlight until it is answered: nil forgets them, an
// error puts them back, and ids changed meanwhile stay dirty either way.
// The caller holds mu.
func (ns *Namespace) queueJumpEvents(old uint32) {
	dirty := ns.dirtyList()
	if ns.dirtyFlight == nil {
		ns.dirtyFlight = map[uint32]int{}
	}
	for _, id := range dirty {
		ns.dirtyFlight[id]++
	}
	ns.dirty = map[uint32]bool{}
	gen := ns.dirtyGen
	ns.queueEvent(Event{Kind: EventIndexChanged, Namespace: ns.name, FileID: old,
		Path: ns.indexPath(old), NewPath: ns.indexPath(ns.cur), Dirty: dirty},
		func(err error) { ns.answerDirty(dirty, gen, err == nil) })
	ns.queueEvent(Event{Kind: EventFileClosed, Namespace: ns.name, FileID: old,
		Path: ns.dataPath(old), NewPath: ns.dataPath(ns.cur)}, nil)
}

// answerDirty applies the answer to a jump-index event that reported ids,
// unless INDEX DIRTY RESET came in between (gen).
func (ns *Namespace) answerDirty(ids []uint32, gen uint64, ok bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if gen != ns.dirtyGen {
		return
	}
	for _, id := range ids {
		if n := ns.dirtyFlight[id]; n > 1 {
			ns.dirtyFlight[id] = n - 1
		} else {
			delete(ns.dirtyFlight, id)
		}
		if !ok {
			ns.dirty[id] = true
		}
	}
}
