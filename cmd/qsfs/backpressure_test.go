package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"qss/zstor/zstortest"
)

// writeSynced writes data at path and fsyncs it, returning the first error.
func writeSynced(path string, data []byte) error {
	w, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	if err == nil {
		err = w.Sync()
	}
	return errors.Join(err, w.Close())
}

// TestBackpressure: with every data backend down, writes fill the cache
// with data that cannot be stored, then wait, then fail with ENOSPC; the
// mount stays up (df answers), status says the data is at risk (exit 2).
// Once the backends are back, writes succeed again and everything is
// stored (a restore on a wiped directory has it all).
func TestBackpressure(t *testing.T) {
	f := newFixture(t, `cache_size = "4M"
rpo = "2s"
data_file_size = "1M"
write_wait = "2s"`)
	p := f.mount()
	files := map[string][]byte{}
	first := filepath.Join(f.mnt, "before")
	files[first] = zstortest.RandomBytes(256 << 10)
	writeFile(t, first, files[first])
	f.mustRun(nil, "sync")

	for _, s := range f.cl.Data {
		s.Stop()
	}
	var enospc error
	var took time.Duration
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; enospc == nil; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no ENOSPC within 60 s with the backends down (%d files written)", i)
		}
		name := filepath.Join(f.mnt, fmt.Sprintf("down%02d", i))
		data := zstortest.RandomBytes(1 << 20)
		start := time.Now()
		err := writeSynced(name, data)
		switch {
		case err == nil:
			files[name] = data
		case errors.Is(err, syscall.ENOSPC):
			enospc, took = err, time.Since(start)
			os.Remove(name)
		default:
			t.Fatalf("write %s with the backends down: %v, want ENOSPC", name, err)
		}
	}
	t.Logf("ENOSPC after %d files, the failing write took %v: %v", len(files)-1, took, enospc)
	if took < 2*time.Second {
		t.Errorf("the write failed after %v, without waiting write_wait (2s) for space", took)
	}

	// The mount answers: df and status.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	out, err := exec.CommandContext(ctx, "df", f.mnt).CombinedOutput()
	cancel()
	if err != nil {
		t.Errorf("df %s with the backends down: %v\n%s", f.mnt, err, out)
	}
	s, code := f.status()
	if code != exitAtRisk || len(s.AtRisk) == 0 || s.WriteENOSPC == 0 {
		t.Errorf("status with the backends down: exit %d, at risk %q, write_enospc %d (want exit %d)", code, s.AtRisk, s.WriteENOSPC, exitAtRisk)
	}
	down := 0
	for _, b := range s.Backends {
		if !b.Reachable {
			down++
		}
	}
	if down != len(f.cl.Data) {
		t.Errorf("status shows %d backends unreachable, want %d", down, len(f.cl.Data))
	}

	back := time.Now()
	for _, s := range f.cl.Data {
		s.RestartSamePort()
	}
	// The uploads retry with a back-off (at most 64 s): wait until the
	// queue drains, as `qsfs status` shows it.
	for {
		s, _ := f.status()
		if s.Queue.Jobs == 0 {
			break
		}
		if time.Since(back) > 90*time.Second {
			t.Fatalf("the upload queue did not drain within 90 s of the backends' return: %+v", s.Queue)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the queue drained %v after the backends came back", time.Since(back))
	after := filepath.Join(f.mnt, "after")
	files[after] = zstortest.RandomBytes(1 << 20)
	if err := writeSynced(after, files[after]); err != nil {
		t.Fatalf("write after the backends came back: %v", err)
	}
	start := time.Now()
	f.mustRun(nil, "sync")
	t.Logf("sync after the backends came back took %v", time.Since(start))
	if s, code := f.status(); code != 0 {
		t.Errorf("status after the backends came back: exit %d, at risk %q", code, s.AtRisk)
	}

	p.kill9()
	f.wipe()
	f.mustRun(nil, "restore")
	f.mount()
	for name, want := range files {
		checkFile(t, name, want)
	}
}
