// Command zdbfsamp measures zdbfs's write amplification and the space its
// namespaces take under small random writes, with zdb's automatic
// compaction on: page records (format v2) against whole-block writes
// (what format v1 did, zdbfs.Config.WholeBlocks), in the same run.
//
//	go run ./bench/zdbfsamp                        # builds ./cmd/zdb itself; needs root (FUSE)
//	go run ./bench/zdbfsamp -writes 32768 -sync 1  # the figures in docs/benchmarks.md
//
// It starts one zdb on 127.0.0.1 with fresh directories under $TMPDIR (or
// -dir), with --compact-ratio and --datasize as given, and for each mode
// (whole blocks, then pages) mounts zdbfs in this process on two fresh
// namespaces, writes a -size file sequentially and fsyncs it, then makes
// -writes random 4 KiB writes at 4 KiB-aligned offsets, with an fsync
// every -sync writes (1: each write is made durable on its own, the case
// where nothing coalesces in the cache). It counts the bytes zdbfs sends
// to zdb (keys and values of SET, keys of DEL) during the random writes,
// samples the size of both namespaces' data files every second, and at
// the end reports:
//
//   - amplification: bytes sent to zdb per byte the application wrote;
//   - the data files during the random writes (median and peak of the
//     per-second samples: zdb checks for compaction every 10 s, so the
//     peak is what the writes add in about that time), and 12 s after
//     them (final), against the file's size and against the live bytes
//     zdb reports (NSINFO data_size_bytes);
//   - the speed of a cold read of the whole file on a fresh mount (zdb's
//     files are in the page cache): what page records cost a reader.
//
// Everything it starts and writes is removed at exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
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
	"sync/atomic"
	"time"

	"qss/zdb/client"
	"qss/zdbfs"
)

var (
	flagBin      = flag.String("bin", "", "zdb binary (default: go build ./cmd/zdb into the temporary directory)")
	flagDir      = flag.String("dir", "", "parent of the temporary directory (default $TMPDIR)")
	flagSize     = flag.Int64("size", 64<<20, "file size in bytes")
	flagWrites   = flag.Int("writes", 16384, "random 4 KiB writes")
	flagSync     = flag.Int("sync", 1, "fsync after this many writes")
	flagDatasize = flag.Int("datasize", 8<<20, "zdb --datasize (rotation, so that compaction has closed files)")
	flagRatio    = flag.String("compact-ratio", "0.5", "zdb --compact-ratio")
	flagInterval = flag.String("compact-interval", "10s", "zdb --compact-interval")
	flagModes    = flag.String("modes", "whole,pages", "modes to run, in order")
)

func main() {
	flag.Parse()
	work, err := os.MkdirTemp(*flagDir, "zdbfsamp-")
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
	dataRoot := filepath.Join(work, "data")
	args := []string{"--data", dataRoot, "--index", filepath.Join(work, "index"),
		"--listen", "127.0.0.1", "--port", strconv.Itoa(port), "--datasize", strconv.Itoa(*flagDatasize),
		"--compact-ratio", *flagRatio, "--compact-interval", *flagInterval}
	srv := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(work, "zdb.log"))
	check(err)
	srv.Stdout, srv.Stderr = logf, logf
	check(srv.Start())
	cleanups = append(cleanups, func() { srv.Process.Kill(); srv.Wait() })
	ctx := context.Background()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var admin *client.Client
	for i := 0; ; i++ {
		if admin, err = client.New(ctx, client.Options{Addr: addr}); err == nil {
			if err = admin.Ping(ctx); err == nil {
				break
			}
			admin.Close()
		}
		if i > 100 {
			fatal("zdb did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer admin.Close()

	fmt.Printf("date: %s\nhost: nproc=%d, %s\nload average at start: %s\n", time.Now().UTC().Format(time.RFC3339),
		runtime.NumCPU(), cpuModel(), loadavg())
	fmt.Printf("workload: %d MiB file, %d random 4 KiB writes, fsync every %d; zdb --datasize %d --compact-ratio %s --compact-interval %s; files under %s\n",
		*flagSize>>20, *flagWrites, *flagSync, *flagDatasize, *flagRatio, *flagInterval, work)
	var rows []string
	for _, mode := range strings.Split(*flagModes, ",") {
		rows = append(rows, runMode(ctx, admin, addr, dataRoot, work, mode))
	}
	fmt.Printf("\n| mode | seconds | amplification | data files median | peak | final | file | zdb live | final/file | final/live | cold read MiB/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Printf("\nload average at end: %s\n", loadavg())
}

// counting is a zdbfs.Store that counts what is sent to zdb.
type counting struct {
	zdbfs.Store
	bytes atomic.Int64
}

func (s *counting) count(ops []zdbfs.Op) {
	for _, op := range ops {
		s.bytes.Add(int64(len(op.Key) + len(op.Value)))
	}
}

func (s *counting) Set(ctx context.Context, k, v []byte) error {
	s.count([]zdbfs.Op{{Key: k, Value: v}})
	return s.Store.Set(ctx, k, v)
}

func (s *counting) Del(ctx context.Context, k []byte) error {
	s.count([]zdbfs.Op{{Key: k, Del: true}})
	return s.Store.Del(ctx, k)
}

func (s *counting) Apply(ctx context.Context, ops []zdbfs.Op) error {
	s.count(ops)
	return s.Store.Apply(ctx, ops)
}

func runMode(ctx context.Context, admin *client.Client, addr, dataRoot, work, mode string) string {
	nsMeta, nsData := mode+"-meta", mode+"-data"
	var stores []*counting
	for _, ns := range []string{nsMeta, nsData} {
		check(admin.NSNew(ctx, ns))
		c, err := client.New(ctx, client.Options{Addr: addr, Namespace: ns})
		check(err)
		defer c.Close()
		stores = append(stores, &counting{Store: zdbfs.NewClientStore(c)})
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fs, err := zdbfs.New(ctx, zdbfs.Config{Meta: stores[0], Data: stores[1], Logger: log, WholeBlocks: mode == "whole"})
	check(err)
	mnt := filepath.Join(work, "mnt-"+mode)
	check(os.Mkdir(mnt, 0o755))
	m, err := zdbfs.MountFS(ctx, fs, mnt, zdbfs.MountOptions{})
	check(err)
	unmounted := false
	cleanups = append(cleanups, func() {
		if !unmounted {
			exec.Command("umount", "-l", mnt).Run()
		}
	})

	files := func() int64 {
		return dirBytes(filepath.Join(dataRoot, nsMeta)) + dirBytes(filepath.Join(dataRoot, nsData))
	}
	f, err := os.OpenFile(filepath.Join(mnt, "file"), os.O_CREATE|os.O_RDWR, 0o644)
	check(err)
	buf := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for off := int64(0); off < *flagSize; off += int64(len(buf)) {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		_, err := f.WriteAt(buf[:min(int64(len(buf)), *flagSize-off)], off)
		check(err)
	}
	check(f.Sync())

	var peak atomic.Int64
	var smu sync.Mutex
	var samples []int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			n := files()
			if n > peak.Load() {
				peak.Store(n)
			}
			smu.Lock()
			samples = append(samples, n)
			smu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	before := stores[0].bytes.Load() + stores[1].bytes.Load()
	start := time.Now()
	page := make([]byte, 4096)
	pages := int(*flagSize / 4096)
	for i := range *flagWrites {
		for j := range page {
			page[j] = byte(rng.Uint32())
		}
		_, err := f.WriteAt(page, int64(rng.IntN(pages))*4096)
		check(err)
		if (i+1)%*flagSync == 0 {
			check(f.Sync())
		}
	}
	check(f.Sync())
	took := time.Since(start)
	sent := stores[0].bytes.Load() + stores[1].bytes.Load() - before
	smu.Lock()
	during := slices.Clone(samples)
	smu.Unlock()
	var series []string
	for i := 0; i < len(during); i += 5 {
		series = append(series, fmt.Sprintf("%.0f", float64(during[i])/(1<<20)))
	}
	fmt.Printf("%s: data files every 5 s of the random writes (MiB): %s\n", mode, strings.Join(series, " "))
	slices.Sort(during)
	median := int64(0)
	if len(during) > 0 {
		median = during[len(during)/2]
	}
	check(f.Close())
	// Give the automatic compaction (checked every 10 s) a chance at what
	// the last files hold.
	time.Sleep(12 * time.Second)
	close(stop)
	wg.Wait()
	final := files()
	var live int64
	for _, ns := range []string{nsMeta, nsData} {
		info, err := admin.NSInfo(ctx, ns)
		check(err)
		n, _ := strconv.ParseInt(info["data_size_bytes"], 10, 64)
		live += n
	}
	check(m.Unmount())
	// A cold read of the whole file on a fresh mount: what the page
	// records cost readers (a mask per block, a second round trip for
	// the pages it lists).
	fs, err = zdbfs.New(ctx, zdbfs.Config{Meta: stores[0], Data: stores[1], Logger: log})
	check(err)
	m, err = zdbfs.MountFS(ctx, fs, mnt, zdbfs.MountOptions{})
	check(err)
	rstart := time.Now()
	b, err := os.ReadFile(filepath.Join(mnt, "file"))
	check(err)
	read := time.Since(rstart)
	if int64(len(b)) != *flagSize {
		fatal("read back %d bytes", len(b))
	}
	check(m.Unmount())
	unmounted = true
	amp := float64(sent) / float64(*flagWrites*4096)
	return fmt.Sprintf("| %s | %.1f | %.2f× | %s | %s | %s | %s | %s | %.2f | %.2f | %.0f |", mode, took.Seconds(), amp,
		mib(median), mib(peak.Load()), mib(final), mib(*flagSize), mib(live), float64(final)/float64(*flagSize), float64(final)/float64(live),
		float64(*flagSize)/(1<<20)/read.Seconds())
}

func dirBytes(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
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

// cleanups unmount, stop the server and remove the temporary directory,
// last first.
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
	fmt.Fprintf(os.Stderr, "zdbfsamp: "+format+"\n", a...)
	runCleanups()
	os.Exit(1)
}
