// Command zdbfsfiles is the small-file workload of bench/zdbfs.sh.
//
//	zdbfsfiles -dir D -n 10000 -size 1024 -dirs 10        # create, then syncfs
//	zdbfsfiles -dir D -n 1000000 -size 0 -dirs 10 -jobs 4 # touch a million files
//
// It creates -dirs subdirectories of -dir and -n files spread evenly over
// them, each written with -size bytes and closed (O_CREAT|O_EXCL, write,
// close), by -jobs goroutines; then it calls syncfs on -dir, and fsync on
// each -fsync directory, so the figure includes getting everything
// durable. (syncfs does not reach a FUSE server — Linux sends FUSE_SYNCFS
// to virtiofs only —, so for zdbfs the benchmark passes its mount point
// to -fsync: zdbfs stores everything on an fsync of its root.) It prints
// one line:
// "files=N seconds=S files_per_second=R".
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dir := flag.String("dir", "", "parent directory (created if missing)")
	n := flag.Int("n", 10000, "number of files")
	size := flag.Int("size", 1024, "bytes per file")
	dirs := flag.Int("dirs", 10, "subdirectories the files are spread over")
	jobs := flag.Int("jobs", 1, "parallel creators")
	var fsyncs multi
	flag.Var(&fsyncs, "fsync", "directory to fsync after the syncfs (repeatable)")
	flag.Parse()
	if *dir == "" || *n <= 0 || *dirs <= 0 || *jobs <= 0 || *size < 0 {
		fmt.Fprintln(os.Stderr, "usage: zdbfsfiles -dir D [-n N] [-size BYTES] [-dirs K] [-jobs J] [-fsync DIR]...")
		os.Exit(2)
	}
	if err := run(*dir, *n, *size, *dirs, *jobs, fsyncs); err != nil {
		fmt.Fprintln(os.Stderr, "zdbfsfiles:", err)
		os.Exit(1)
	}
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return fmt.Sprint(*m) }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func run(dir string, n, size, dirs, jobs int, fsyncs []string) error {
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for d := range dirs {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("d%03d", d)), 0o755); err != nil {
			return err
		}
	}
	data := bytes.Repeat([]byte("zdbfs small file\n"), size/17+1)[:size]
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, jobs)
	for range jobs {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				p := filepath.Join(dir, fmt.Sprintf("d%03d", i%dirs), fmt.Sprintf("f%07d", i))
				f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
				if err == nil && size > 0 {
					_, err = f.Write(data)
				}
				if f != nil {
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				if err != nil {
					errs <- err
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	for _, p := range fsyncs {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("fsync %s: %w", p, err)
		}
	}
	s := time.Since(start).Seconds()
	fmt.Printf("files=%d seconds=%.3f files_per_second=%.0f\n", n, s, float64(n)/s)
	return nil
}
