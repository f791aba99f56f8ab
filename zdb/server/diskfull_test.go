package server_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// TestDiskFullAnswersError runs zdb on a 2 MiB tmpfs: once the disk is
// full a SET is answered -Cannot write data/index right now (0-db's reply)
// and the connection stays usable; what was acknowledged survives a
// restart.
func TestDiskFullAnswersError(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and must run as root (as ./test.sh does in CI)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	s := zdbtest.StartIn(t, dir)
	c := dial(t, s)

	const errWrite = "-Cannot write data/index right now"
	acked := map[string][]byte{}
	full := false
	for i := 0; i < 1000 && !full; i++ {
		k := fmt.Sprintf("key-%04d", i)
		v := bytes.Repeat([]byte{byte(i)}, 16<<10)
		switch got := c.do("SET", k, v); {
		case got.Kind == resp.KindError:
			if got.String() != errWrite {
				t.Fatalf("SET on a full disk: %s, want %s", got, errWrite)
			}
			full = true
		case got.String() == quoted([]byte(k)):
			acked[k] = v
		default:
			t.Fatalf("SET %s: %s", k, got)
		}
	}
	if !full {
		t.Fatal("the 2 MiB disk never filled")
	}
	c.expect("+PONG", "PING")
	// A pipelined batch of writes on the full disk: every SET gets the
	// error (none is acknowledged), the reads between them are answered.
	var batch bytes.Buffer
	for i := 0; i < 5; i++ {
		batch.Write(cmd("SET", fmt.Sprint("batch-", i), bytes.Repeat([]byte("b"), 16<<10)))
		batch.Write(cmd("EXISTS", "key-0000"))
	}
	c.raw(batch.Bytes())
	for i := 0; i < 5; i++ {
		c.expectReply(errWrite)
		c.expectReply(":1")
	}
	for k, v := range acked {
		if got := c.bulk("GET", k); !bytes.Equal(got, v) {
			t.Fatalf("GET %s after the disk filled: %d bytes", k, len(got))
		}
	}
	s.Restart()
	c = dial(t, s)
	c.expect(fmt.Sprint(":", len(acked)), "DBSIZE")
	for k, v := range acked {
		if got := c.bulk("GET", k); !bytes.Equal(got, v) {
			t.Fatalf("GET %s after restart: %d bytes", k, len(got))
		}
	}
	c.expect("$-1", "GET", "batch-0")
}
