package zdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
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

// HookExitError is the verdict of a hook program that did not exit 0.
// Status is -1 when it could not be waited for (killed by a signal, or its
// context ended).
type HookExitError struct {
	Event  string
	Status int
}

func (e *HookExitError) Error() string {
	return "hook " + e.Event + " exited with status " + strconv.Itoa(e.Status)
}

// ExecHooks is the Hooks of zdb's --hook option, following 0-db's
// contract: the program is executed directly (no shell) with argv =
// [program, event, instance id, Event.Args()...]. For a blocking event it
// waits, and a non-zero exit is the event's error (*HookExitError); for
// the others it returns once the program started. It keeps the runs of
// the last 300 seconds for HOOKS.
type ExecHooks struct {
	path     string
	instance string
	log      *slog.Logger

	mu   sync.Mutex
	runs []*HookRun
	wg   sync.WaitGroup
}

const hookHistory = 300 * time.Second

// NewExecHooks returns the Hooks that run program; instance is the hook's
// second argument (tcp://host:port or unix://path).
func NewExecHooks(program, instance string, log *slog.Logger) *ExecHooks {
	if log == nil {
		log = slog.Default()
	}
	return &ExecHooks{path: program, instance: instance, log: log}
}

// Handle runs the program for ev. ctx bounds a blocking run: the program
// is killed when ctx ends. Background runs are never killed.
func (h *ExecHooks) Handle(ctx context.Context, ev Event) error {
	event := ev.Kind.String()
	args := ev.Args()
	argv := append([]string{event, h.instance}, args...)
	wait := ev.Kind.Blocking()
	var cmd *exec.Cmd
	if wait {
		cmd = exec.CommandContext(ctx, h.path, argv...)
	} else {
		cmd = exec.Command(h.path, argv...)
	}
	rec := &HookRun{Event: event, Args: args, Created: time.Now().Unix()}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("hook %s: %w", event, err)
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
		return status
	}
	if wait {
		if status := finish(); status != 0 {
			return &HookExitError{Event: event, Status: status}
		}
		return nil
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if status := finish(); status != 0 {
			h.log.Warn("hook exited with an error", "event", event, "status", status)
		}
	}()
	return nil
}

func (h *ExecHooks) prune() {
	cut := time.Now().Add(-hookHistory).Unix()
	keep := h.runs[:0]
	for _, r := range h.runs {
		if r.Finished == 0 || r.Created >= cut {
			keep = append(keep, r)
		}
	}
	h.runs = keep
}

// Runs lists the runs started in the last 300 seconds and those still
// running (HOOKS).
func (h *ExecHooks) Runs() []HookRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.prune()
	out := make([]HookRun, len(h.runs))
	for i, r := range h.runs {
		out[i] = *r
	}
	return out
}

// Wait waits until the background runs have finished, or ctx ends.
func (h *ExecHooks) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
