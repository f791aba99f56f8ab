// Command zdbcompact measures zdb's online compaction: the space of a
// namespace before and after COMPACT, and the latency of foreground GET and
// SET (4 KiB values, several clients) while a compaction runs, against the
// same load with no compaction.
//
//	go run ./bench/zdbcompact                  # builds ./cmd/zdb itself
//	go run ./bench/zdbcompact -keys 20000 -rounds 4 -clients 8
//
// It starts one zdb on 127.0.0.1 with fresh directories under $TMPDIR (or
// -dir), with automatic compaction off, writes -keys keys -rounds times
// (so about (rounds-1)/rounds of the data files are dead), measures the
// load alone for -idle, then sends COMPACT on its own connection and
// measures the same load until COMPACT answers. Everything it starts and
// writes is removed at exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"qss/zdb/client"
)

var (
	flagBin      = flag.String("bin", "", "zdb binary (default: go build ./cmd/zdb into the temporary directory)")
	flagDir      = flag.String("dir", "", "parent of the temporary directory (default $TMPDIR)")
	flagKeys     = flag.Int("keys", 20000, "distinct keys")
	flagRounds   = flag.Int("rounds", 4, "times every key is written before measuring")
	flagSize     = flag.Int("size", 4096, "value size in bytes")
	flagClients  = flag.Int("clients", 8, "concurrent foreground clients")
	flagIdle     = flag.Duration("idle", 10*time.Second, "how long the load is measured without compaction")
	flagDatasize = flag.Int("datasize", 64<<20, "zdb --datasize")
	flagSync     = flag.Bool("sync", false, "run zdb with --sync")
)

func main() {
	flag.Parse()
	work, err := os.MkdirTemp(*flagDir, "zdbcompact-")
	check(err)
	cleanups = append(cleanups, func() { os.RemoveAll(work) })
	defer runCleanups()
	bin := *flagBin
	if bin == "" {
		bin = filepath.Join(work, "zdb")
		out, err := exec.Command("go", "build", "-o", bin, "./cmd/zdb").CombinedOutput()
		if err != nil {
			fatal("go build ./cmd/zdb: %v\n%s", err, out)
		}
	}
	port := freePort()
	args := []string{"--data", filepath.Join(work, "data"), "--index", filepath.Join(work, "index"),
		"--listen", "127.0.0.1", "--port", strconv.Itoa(port), "--datasize", strconv.Itoa(*flagDatasize),
		"--compact-ratio", "0"}
	if *flagSync {
		args = append(args, "--sync")
	}
	srv := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(work, "zdb.log"))
	check(err)
	srv.Stdout, srv.Stderr = logf, logf
	check(srv.Start())
	cleanups = append(cleanups, func() { srv.Process.Kill(); srv.Wait() })

	ctx := context.Background()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var c *client.Client
	for i := 0; ; i++ {
		if c, err = client.New(ctx, client.Options{Addr: addr, PoolSize: *flagClients + 2}); err == nil {
			break
		}
		if i > 100 {
			fatal("zdb did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()

	fmt.Printf("date: %s\nhost: nproc=%d, %s\nload average at start: %s\n", time.Now().UTC().Format(time.RFC3339),
		runtime.NumCPU(), cpuModel(), loadavg())
	fmt.Printf("workload: %d keys x %d B, each written %d times; %d clients, 50%% GET / 50%% SET of random keys; zdb --datasize %d%s\n",
		*flagKeys, *flagSize, *flagRounds, *flagClients, *flagDatasize, map[bool]string{true: " --sync"}[*flagSync])

	t0 := time.Now()
	value := make([]byte, *flagSize)
	for round := 0; round < *flagRounds; round++ {
		p := c.Pipeline()
		for i := 0; i < *flagKeys; i++ {
			value[0] = byte(round)
			p.Do([]byte("SET"), key(i), value)
			if p.Len() == 256 || i == *flagKeys-1 {
				if _, err := p.Exec(ctx); err != nil {
					fatal("fill: %v", err)
				}
				p.Reset()
			}
		}
	}
	dataDir := filepath.Join(work, "data", "default")
	before := dirBytes(dataDir)
	fmt.Printf("fill: %v; data files %s\n", time.Since(t0).Round(time.Millisecond), mib(before))

	idle := load(ctx, c, func(stop <-chan struct{}) { time.Sleep(*flagIdle) })
	var stats map[string]string
	var took time.Duration
	during := load(ctx, c, func(<-chan struct{}) {
		t := time.Now()
		st, err := c.Compact(ctx)
		if err != nil {
			fatal("COMPACT: %v", err)
		}
		took, stats = time.Since(t), st
	})
	fmt.Printf("COMPACT under load: %v; %s\n", took.Round(time.Millisecond), fmtStats(stats))
	// The load kept writing; a second COMPACT with no load shows the space
	// compaction leaves.
	before = dirBytes(dataDir)
	t1 := time.Now()
	stats, err = c.Compact(ctx)
	check(err)
	after := dirBytes(dataDir)
	live, _ := strconv.ParseInt(stats["live_bytes"], 10, 64)
	fmt.Printf("COMPACT, no load: %v; data files %s -> %s; live %s; after/live = %.2f; %s\n",
		time.Since(t1).Round(time.Millisecond), mib(before), mib(after), mib(live), float64(after)/float64(live), fmtStats(stats))
	fmt.Printf("\n| phase | GET p50 | GET p99 | GET p99.9 | SET p50 | SET p99 | SET p99.9 | ops/s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	idle.row("idle")
	during.row("during COMPACT")
	fmt.Printf("\nGET p99 during/idle = %.2f, SET p99 during/idle = %.2f\n",
		float64(during.pct("GET", 0.99))/float64(idle.pct("GET", 0.99)),
		float64(during.pct("SET", 0.99))/float64(idle.pct("SET", 0.99)))
	fmt.Printf("load average at end: %s\n", loadavg())
}

func key(i int) []byte { return []byte(fmt.Sprintf("key-%08d", i)) }

// result holds the latencies of one phase.
type result struct {
	lat     map[string][]time.Duration
	elapsed time.Duration
}

// load runs the foreground clients until phase returns.
func load(ctx context.Context, c *client.Client, phase func(stop <-chan struct{})) *result {
	stop := make(chan struct{})
	res := &result{lat: map[string][]time.Duration{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *flagClients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 42))
			value := make([]byte, *flagSize)
			var gets, sets []time.Duration
			for {
				select {
				case <-stop:
					mu.Lock()
					res.lat["GET"] = append(res.lat["GET"], gets...)
					res.lat["SET"] = append(res.lat["SET"], sets...)
					mu.Unlock()
					return
				default:
				}
				k := key(r.IntN(*flagKeys))
				t := time.Now()
				if r.IntN(2) == 0 {
					if _, err := c.Get(ctx, k); err != nil {
						fatal("GET: %v", err)
					}
					gets = append(gets, time.Since(t))
				} else {
					value[0] = byte(r.Uint32())
					if _, _, err := c.Set(ctx, k, value); err != nil {
						fatal("SET: %v", err)
					}
					sets = append(sets, time.Since(t))
				}
			}
		}(w)
	}
	phase(stop)
	close(stop)
	wg.Wait()
	res.elapsed = time.Since(start)
	for _, l := range res.lat {
		slices.Sort(l)
	}
	return res
}

func (r *result) pct(op string, p float64) time.Duration {
	l := r.lat[op]
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(p*float64(len(l))))]
}

func (r *result) row(name string) {
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }
	n := len(r.lat["GET"]) + len(r.lat["SET"])
	fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %.0f |\n", name,
		us(r.pct("GET", 0.5)), us(r.pct("GET", 0.99)), us(r.pct("GET", 0.999)),
		us(r.pct("SET", 0.5)), us(r.pct("SET", 0.99)), us(r.pct("SET", 0.999)), float64(n)/r.elapsed.Seconds())
}

func fmtStats(m map[string]string) string {
	var parts []string
	for _, k := range []string{"files_compacted", "files_retired", "entries_copied", "bytes_copied", "data_bytes_before", "data_bytes_after", "bytes_reclaimed"} {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}

func dirBytes(dir string) int64 {
	ents, err := os.ReadDir(dir)
	check(err)
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "d") {
			n += fi.Size()
		}
	}
	return n
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown cpu"
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func check(err error) {
	if err != nil {
		fatal("%v", err)
	}
}

// cleanups stop the server and remove the temporary directory, last first.
var (
	cleanups  []func()
	cleanOnce sync.Once
)

func runCleanups() {
	cleanOnce.Do(func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	})
}

func fatal(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "zdbcompact: "+format+"\n", a...)
	runCleanups()
	os.Exit(1)
}
