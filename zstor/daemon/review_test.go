package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zstor"
	"qss/zstor/zstortest"
)

// A data backend listed twice in one group (a config 0-stor_v2 loads, and
// so do we, with a warning) must not break the metrics endpoint: its
// gauges are one series, not two identical ones.
func TestReviewMetricsDuplicateBackend(t *testing.T) {
	cl := zstortest.New(t, 7)
	sock := socketPath(t)
	port := zdbtest.FreePort(t)
	text := cl.ConfigTOML(zstortest.TestKey, socketExtra(sock)+fmt.Sprintf("prometheus_port = %d\n", port))
	text += fmt.Sprintf("[[groups.backends]]\naddress = %q\nnamespace = %q\npassword = %q\n",
		cl.Data[0].Addr(), zstortest.DataNS, zstortest.DataPass)
	cfg := filepath.Join(t.TempDir(), "zstor_config.toml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	startInProcess(t, cfg, sock, testOptions())
	var status int
	var body string
	waitFor(t, "backend gauges on /metrics", 10*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status, body = resp.StatusCode, string(b)
		return status != http.StatusOK || strings.Contains(body, "zstor_backend_connection_status{")
	})
	if status != http.StatusOK {
		t.Fatalf("/metrics answered %d:\n%.600s", status, body)
	}
}

// The cache cap must not evict a file whose stored copy cannot be read
// back now (fewer than k shards of a chunk on reachable backends): the
// local file is then the only readable copy.
func TestReviewCacheKeepsUnreadable(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cache := filepath.Join(cl.Root, "cache")
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock)+
		fmt.Sprintf("zdb_data_dir_path = %q\nmax_zdb_data_dir_size = 1\n", cache))
	ctx := zstortest.Ctx(t)
	p := cl.WriteFile("cache/a", zstortest.RandomBytes(1200<<10))
	if _, err := direct(t, cfg).Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(p, old, old)
	// k = 4 of n = 6: three backends gone leave every chunk unreadable.
	for _, s := range cl.Data[:3] {
		s.Kill()
	}
	o := testOptions()
	o.CacheMinAge = time.Minute
	d := startInProcess(t, cfg, sock, o)
	waitLog(t, d.log, "nothing more can be evicted", 20*time.Second)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the only readable copy was evicted: %v", err)
	}
}

// Malformed requests each get one clear error (or, for a request that is
// not even a line, a closed connection), and the daemon keeps serving.
func TestReviewHostileRequests(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock))
	startInProcess(t, cfg, sock, testOptions())
	send := func(line string) (map[string]any, error) {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(conn, line); err != nil {
			return nil, err
		}
		b, err := bufio.NewReader(conn).ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var m map[string]any
		return m, json.Unmarshal(b, &m)
	}
	kindOf := func(m map[string]any) string {
		e, _ := m["error"].(map[string]any)
		k, _ := e["kind"].(string)
		return k
	}
	for _, tc := range []struct{ line, kind string }{
		{"not json\n", KindBadRequest},
		{"{}\n", KindVersion},
		{`{"v":1}` + "\n", KindBadRequest},
		{`{"v":1,"op":"nope"}` + "\n", KindBadRequest},
		{`{"v":1,"op":"store","path":"rel/ative"}` + "\n", KindBadRequest},
		{`{"v":1,"op":"queue","path":"/no/such/file"}` + "\n", KindNoFile},
		{`{"v":1,"op":"retrieve","path":"/"}` + "\n", KindNotUnderRoot},
		{`{"v":1,"op":"store","path":"/dev/null"}` + "\n", KindNotUnderRoot},
		{`{"v":1,"op":"check","key":"` + strings.Repeat("k", 500<<10) + `"}` + "\n", KindNotStored},
		{`{"v":1,"op":"store","path":"/x\u0000y","key":"a"}` + "\n", KindFailed},
		{`{"v":[1],"op":{"a":[[[[[]]]]]}}` + "\n", KindBadRequest},
	} {
		m, err := send(tc.line)
		if err != nil {
			t.Fatalf("%.60q: %v", tc.line, err)
		}
		if m["ok"] != false || kindOf(m) != tc.kind {
			t.Errorf("%.60q: answer %.200v, want error kind %s", tc.line, m, tc.kind)
		}
	}
	// Over the 1 MiB limit, and a line never finished: no answer, no harm.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go io.WriteString(conn, strings.Repeat("x", 3<<20))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	conn.Read(make([]byte, 1))
	conn.Close()
	if _, err := dial(t, sock).Check(zstortest.Ctx(t), "x"); err == nil || !strings.Contains(err.Error(), "no stored object") {
		t.Fatalf("daemon after hostile requests: %v", err)
	}
}
