package zdb

import (
	"errors"
	"log/slog"
	"os/exec"
	"sync"
	"time"
)

// HookRun is one execution of the hook program, as HOOKS reports it.
type HookRun struct {
	Event    string
	Args     []string
	PID      int
	Created  int64 // unix seconds
	Finished int64 // 0 while running
	Status   int
}

// hookRunner executes the --hook program directly (no shell) with
// argv = [hook, event, instance id, args...], following 0-db's contract.
type hookRunner struct {
	path     string
	instance string
	log      *slog.Logger

	mu   sync.Mutex
	runs []*HookRun
	wg   sync.WaitGroup
}

const hookHistory = 300 * time.Second

func newHookRunner(path, instance string, log *slog.Logger) *hookRunner {
	return &hookRunner{path: path, instance: instance, log: log}
}

func (h *hookRunner) enabled() bool { return h.path != "" }

// run starts the hook for event. With wait it blocks and returns the exit
// status (-1 when it could not run); without, it returns 0 at once. With no
// hook configured it returns 0.
func (h *hookRunner) run(event string, wait bool, args ...string) int {
	if h.path == "" {
		return 0
	}
	argv := append([]string{event, h.instance}, args...)
	cmd := exec.Command(h.path, argv...)
	rec := &HookRun{Event: event, Args: append([]string(nil), args...), Created: time.Now().Unix()}
	if err := cmd.Start(); err != nil {
		h.log.Error("hook failed to start", "event", event, "err", err)
		return -1
	}
	rec.PID = cmd.Process.Pid
	h.mu.Lock()
	h.prune()
	h.runs = append(h.runs, rec)
	h.mu.Unlock()
	finish := func() int {
		err := cmd.Wait()
		status := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ExitCode()
		} else if err != nil {
			status = -1
		}
		h.mu.Lock()
		rec.Finished = time.Now().Unix()
		rec.Status = status
		h.mu.Unlock()
		if status != 0 {
			h.log.Warn("hook exited with an error", "event", event, "status", status)
		}
		return status
	}
	if wait {
		return finish()
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		finish()
	}()
	return 0
}

func (h *hookRunner) prune() {
	cut := time.Now().Add(-hookHistory).Unix()
	keep := h.runs[:0]
	for _, r := range h.runs {
		if r.Finished == 0 || r.Created >= cut {
			keep = append(keep, r)
		}
	}
	h.runs = keep
}

func (h *hookRunner) recent() []HookRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.prune()
	out := make([]HookRun, len(h.runs))
	for i, r := range h.runs {
		out[i] = *r
	}
	return out
}

// wait waits for background hooks, at most a few seconds.
func (h *hookRunner) wait() {
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}
