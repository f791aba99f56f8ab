package daemon

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zstor"
	"qss/zstor/config"
	"qss/zstor/meta"
	"qss/zstor/pipeline"
	"qss/zstor/zstortest"
)

// otherKey is a master key other than zstortest.TestKey.
const otherKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func getHealthz(t *testing.T, port int) (int, healthz) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h healthz
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("healthz body: %v", err)
	}
	return resp.StatusCode, h
}

// With the production intervals, a killed data backend shows in the repair
// backlog and the lowest-redundancy gauge within 5 s (it took about 26 s:
// the redundancy check ran every minute, against a cached health
// snapshot). zstor_objects counts every object record, also one this key
// cannot open, and /healthz answers.
func TestBackendLossVisibleWithin5s(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	port := zdbtest.FreePort(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock)+fmt.Sprintf("prometheus_port = %d\n", port))
	ctx := zstortest.Ctx(t)
	c := direct(t, cfg)
	for i := range 2 {
		if _, err := c.Store(ctx, cl.WriteFile(fmt.Sprintf("o%d", i), zstortest.RandomBytes(300<<10)), zstor.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	// A record this key cannot open (sealed with another key), in the
	// same metadata namespace.
	conf, err := config.Load(cl.WriteConfig(otherKey, ""))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := meta.NewZDB(ctx, conf.Meta.Backends, conf.Meta.Prefix, meta.WithLogger(slog.New(slog.DiscardHandler)),
		meta.WithSealer(pipeline.NewMetaSealer(conf.MetaKey())))
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.Put(ctx, "not-a-record", zstortest.RandomBytes(300)); err != nil {
		t.Fatal(err)
	}
	ms.Close()

	o := Options{ScrubInterval: -1} // production health, repair and back-off settings
	startInProcess(t, cfg, sock, o)
	var page string
	waitFor(t, "the first census", 10*time.Second, func() bool {
		page = scrape(t, port)
		v, _ := metricValue(page, "zstor_lowest_redundancy")
		return v == "2"
	})
	for _, want := range [][2]string{{"zstor_objects", "3"}, {"zstor_objects_unreadable", "1"}, {"zstor_repair_backlog", "0"}} {
		if v, _ := metricValue(page, want[0]); v != want[1] {
			t.Errorf("%s = %q, want %s", want[0], v, want[1])
		}
	}
	code, h := getHealthz(t, port)
	if code != http.StatusOK || h.Status != "degraded" || h.Objects != 3 || h.UnreadableObjects != 1 || h.DataUnreachable != 0 {
		t.Errorf("healthz with an unreadable record: %d %+v", code, h)
	}

	cl.Data[0].Kill()
	killed := time.Now()
	waitFor(t, "the loss in the backlog and lowest-redundancy gauges", 15*time.Second, func() bool {
		page = scrape(t, port)
		v, _ := metricValue(page, "zstor_lowest_redundancy")
		b, _ := metricValue(page, "zstor_repair_backlog")
		return v == "1" && b == "2"
	})
	if took := time.Since(killed); took > 5*time.Second {
		t.Errorf("the loss of a backend showed after %v, want at most 5 s", took)
	} else {
		t.Logf("the loss of a backend showed after %v", took.Round(time.Millisecond))
	}
	if v, _ := metricValue(page, "zstor_backend_connection_status", `backend="`+cl.Data[0].Addr()+`/zdata"`); v != "0" {
		t.Errorf("connection status of the killed backend: %q", v)
	}
	code, h = getHealthz(t, port)
	if code != http.StatusOK || h.Status != "degraded" || h.DataUnreachable != 1 || h.RepairBacklog != 2 ||
		h.LowestRedundancy == nil || *h.LowestRedundancy != 1 {
		t.Errorf("healthz with a backend down: %d %+v", code, h)
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(page, "zstor_"))
	}
}

func grepLines(page, prefix string) string {
	var out []string
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A shard operation that finds a backend dead wakes the health check at
// once: with a health interval of a minute, the loss still shows in the
// gauges within seconds of the first store that tried the backend.
func TestDataPathFailureWakesHealthCheck(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	port := zdbtest.FreePort(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock)+fmt.Sprintf("prometheus_port = %d\n", port))
	ctx := zstortest.Ctx(t)
	c := direct(t, cfg)
	if _, err := c.Store(ctx, cl.WriteFile("before", zstortest.RandomBytes(100<<10)), zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	o := testOptions()
	o.HealthInterval = time.Minute
	o.RepairInterval = time.Minute
	startInProcess(t, cfg, sock, o)
	waitFor(t, "the first census", 10*time.Second, func() bool {
		v, _ := metricValue(scrape(t, port), "zstor_lowest_redundancy")
		return v == "2"
	})
	cl.Data[0].Kill()
	// n = 6 over six backends: the store must try the dead one.
	dc := dial(t, sock)
	start := time.Now()
	dc.Store(ctx, cl.WriteFile("after", zstortest.RandomBytes(100<<10)), zstor.StoreOptions{})
	waitFor(t, "the loss in the gauges", 10*time.Second, func() bool {
		page := scrape(t, port)
		v, _ := metricValue(page, "zstor_lowest_redundancy")
		s, _ := metricValue(page, "zstor_backend_connection_status", `backend="`+cl.Data[0].Addr()+`/zdata"`)
		return v == "1" && s == "0"
	})
	t.Logf("the loss showed %v after the store began", time.Since(start).Round(time.Millisecond))
}
