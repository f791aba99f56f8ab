package daemon

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/zstortest"
)

// TestProtocolVersions: a version 1 request is still served and answered
// in version 1; version 2 in 2; anything newer is refused. A version 2
// retrieve that asks for progress gets progress lines — the total first,
// done reaching it, none after the response — and a version 1 request
// never does, even if it sets the field.
func TestProtocolVersions(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock))
	startInProcess(t, cfg, sock, testOptions())
	exchange := func(line string) []map[string]any {
		t.Helper()
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(conn, line+"\n"); err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		sc := bufio.NewScanner(conn)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: answer line %q: %v", line, sc.Text(), err)
			}
			out = append(out, m)
		}
		if len(out) == 0 {
			t.Fatalf("%s: no answer", line)
		}
		return out
	}
	for _, tc := range []struct {
		line string
		v    float64
		ok   bool
	}{
		{`{"v":1,"op":"ping"}`, 1, true},
		{`{"v":2,"op":"ping"}`, 2, true},
		{`{"v":3,"op":"ping"}`, ProtocolVersion, false},
		{`{"v":0,"op":"ping"}`, ProtocolVersion, false},
	} {
		ans := exchange(tc.line)
		if len(ans) != 1 || ans[0]["v"] != tc.v || ans[0]["ok"] != tc.ok {
			t.Errorf("%s: answer %v, want v %v ok %v", tc.line, ans, tc.v, tc.ok)
		}
	}

	data := zstortest.RandomBytes(5*cl.ChunkSize + 9)
	p := cl.WriteFile("proto/p.bin", data)
	if _, err := dial(t, sock).Store(zstortest.Ctx(t), p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	ans := exchange(`{"v":2,"op":"retrieve","path":"` + p + `","progress":true}`)
	last := ans[len(ans)-1]
	if last["ok"] != true || len(ans) < 3 {
		t.Fatalf("v2 retrieve with progress: %d lines, last %v", len(ans), last)
	}
	var done float64
	for i, m := range ans[:len(ans)-1] {
		pr, ok := m["progress"].(map[string]any)
		if !ok || m["v"] != float64(2) {
			t.Fatalf("line %d is not a progress line: %v", i, m)
		}
		if pr["total"] != float64(len(data)) {
			t.Fatalf("progress line %d: total %v, want %d", i, pr["total"], len(data))
		}
		if d := pr["done"].(float64); d < done {
			t.Fatalf("progress went back: %v after %v", d, done)
		} else {
			done = d
		}
	}
	if done != float64(len(data)) {
		t.Fatalf("progress ended at %v of %d", done, len(data))
	}
	os.Remove(p)
	ans = exchange(`{"v":1,"op":"retrieve","path":"` + p + `","progress":true}`)
	if len(ans) != 1 || ans[0]["ok"] != true || ans[0]["v"] != float64(1) {
		t.Fatalf("v1 retrieve: %v", ans)
	}
	// v1 has no protect: a changed file is replaced, as v1 daemons did.
	os.WriteFile(p, []byte("changed"), 0o644)
	if ans = exchange(`{"v":1,"op":"retrieve","path":"` + p + `","protect":true}`); ans[0]["ok"] != true {
		t.Fatalf("v1 retrieve over a changed file: %v", ans)
	}
	os.WriteFile(p, []byte("changed"), 0o644)
	ans = exchange(`{"v":2,"op":"retrieve","path":"` + p + `","protect":true}`)
	if e, _ := ans[0]["error"].(map[string]any); e == nil || e["kind"] != KindLocalChanged || !strings.Contains(e["msg"].(string), "--force") {
		t.Fatalf("v2 protected retrieve over a changed file: %v", ans)
	}
}
