package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"qss/internal/fake0db"
	"qss/internal/resp"
)

// alignedData is a file whose 64 KiB blocks, trimmed of their zero tails,
// make SET requests of exactly 64 KiB (block keys are 17 bytes,
// docs/zdbfs-format.md): pipelined, they stall the C 0-db every time.
func alignedData(t *testing.T, blocks int) []byte {
	t.Helper()
	key := make([]byte, 17)
	l := 64 << 10
	for ; l > 0; l-- {
		var b bytes.Buffer
		w := resp.NewWriter(&b, 1<<17)
		w.Command([]byte("SET"), key, make([]byte, l))
		w.Flush()
		if b.Len() == 64<<10 {
			break
		}
	}
	out := make([]byte, blocks<<16)
	for i := range blocks {
		for j := range l {
			out[i<<16+j] = byte(1 + (i+j)%251)
		}
	}
	return out
}

// TestC0DB runs the zdbfs command on a server that behaves like the C
// 0-db (internal/fake0db): files written and fsync'ed are stored whole
// (zdbfs tells 0-db from our zdb by INFO and does not pipeline to it),
// and when the server then hangs, an unmount gives up after closetimeout=
// and zdbfs exits with an error instead of retrying for ever.
func TestC0DB(t *testing.T) {
	bin := buildZdbfs(t)
	srv := fake0db.Start(t)
	dir := t.TempDir()
	p := startZdbfs(t, bin, dir, srv.Port(), "closetimeout=2s")
	data := alignedData(t, 32)
	f, err := os.Create(filepath.Join(dir, "aligned"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync on 0-db: %v", err) // (p.log is read once zdbfs has exited)
	}
	f.Close()
	if n := srv.Stalls(); n != 0 {
		t.Fatalf("%d connections stalled", n)
	}

	// More data, not yet stored, and then a server that never answers.
	if err := os.WriteFile(filepath.Join(dir, "late"), bytes.Repeat([]byte("x"), 300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err == nil || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).ExitStatus() != 1 {
			t.Fatalf("zdbfs after unmount with zdb hung: %v, want exit status 1\n%s", err, p.log)
		}
		if !strings.Contains(p.log.String(), "zdbfs: final flush") {
			t.Errorf("no final flush error:\n%s", p.log)
		}
		if !strings.Contains(p.log.String(), "not our zdb") {
			t.Errorf("no log line saying the server is not our zdb:\n%s", p.log)
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-done
		t.Fatalf("zdbfs still running 20 s after unmount with closetimeout=2s\n%s", p.log)
	}
}
