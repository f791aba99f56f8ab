// Command zdbattack measures the peak resident memory of a real zdb under
// the memory attacks that --inflight bounds (docs/zdb.md, "Memory").
//
// Each scenario runs on a fresh zdb process, whose peak RSS (VmHWM of
// /proc/PID/status, kept by the kernel) is the figure:
//
//   - args-N: N clients each announce a request of 1024 arguments and send
//     8 MiB arguments (up to -args of them, or for -duration), then half of
//     one more, and hold the connection for -hold;
//   - mget-N: N clients each send MGET of one 8 MiB key -mget times and do
//     not read the reply for -hold;
//   - mixed: the args and mget clients of the largest N together.
//
// Meanwhile a probe client runs PING, SET and GET of small values every
// 50 ms: its slowest round trip shows that small requests are served all
// along. After the attackers disconnect and 2 s of idle time, the RSS is
// read again (what is returned).
//
//	go run ./bench/zdbattack                          # builds ./cmd/zdb
//	go run ./bench/zdbattack -bin /tmp/zdb -md attack.md
//	go run ./bench/zdbattack -zdb-args "--inflight 64M" -clients 1,8
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"qss/internal/resp"
)

var (
	flagBin     = flag.String("bin", "", "zdb binary (default: go build ./cmd/zdb into a temporary directory)")
	flagZdbArgs = flag.String("zdb-args", "", "extra zdb flags, space separated (e.g. \"--inflight 64M\")")
	flagClients = flag.String("clients", "1,8", "numbers of attacking clients, one scenario each")
	flagArgs    = flag.Int("args", 1023, "8 MiB arguments each args client sends before the half-sent one")
	flagMGet    = flag.Int("mget", 256, "times the 8 MiB key appears in each MGET")
	flagHold    = flag.Duration("hold", 3*time.Second, "how long the attackers hold their connections once sent")
	flagLimit   = flag.Duration("duration", 20*time.Second, "longest time an args client keeps sending")
	flagDir     = flag.String("dir", "", "parent of the temporary directories (default $TMPDIR)")
	flagMD      = flag.String("md", "", "also write the results as markdown to this file")
)

const mib = 1 << 20

var work string

func main() {
	flag.Parse()
	var counts []int
	for _, f := range strings.Split(*flagClients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fatalf("-clients: %q is not a positive number", f)
		}
		counts = append(counts, n)
	}
	var err error
	if work, err = os.MkdirTemp(*flagDir, "zdbattack-"); err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(work)
	bin, rev := *flagBin, ""
	if bin == "" {
		bin, rev = build()
	} else {
		rev = revision(bin)
	}

	var out report
	out.fact("date", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	out.fact("machine", fmt.Sprintf("%d CPUs, %s, %s RAM, %s", runtime.NumCPU(), cpuModel(), memTotal(), kernel()))
	out.fact("load average at start", loadavg())
	out.fact("zdb", bin+" "+rev)
	out.fact("zdb flags", *flagZdbArgs)
	out.fact("attack", fmt.Sprintf("args clients: *1024 then up to %d x 8 MiB (at most %v), half of one more, held %v; mget clients: MGET of one 8 MiB key x %d, unread for %v",
		*flagArgs, *flagLimit, *flagHold, *flagMGet, *flagHold))
	out.printFacts()

	big := bytes.Repeat([]byte("x"), 8*mib)
	for _, n := range counts {
		out.add(run(bin, fmt.Sprintf("args-%d", n), n, 0, big))
	}
	for _, n := range counts {
		out.add(run(bin, fmt.Sprintf("mget-%d", n), 0, n, big))
	}
	top := counts[len(counts)-1]
	out.add(run(bin, fmt.Sprintf("mixed-%d+%d", top, top), top, top, big))
	out.fact("load average at end", loadavg())
	fmt.Println("load average at end:", loadavg())
	if *flagMD != "" {
		if err := os.WriteFile(*flagMD, out.markdown(), 0o644); err != nil {
			fatalf("%v", err)
		}
		fmt.Fprintln(os.Stderr, "wrote", *flagMD)
	}
}

type result struct {
	name                      string
	base, peak, after, probes int64
	probeMax                  time.Duration
	sent                      int64
	dur                       time.Duration
	note                      string
}

// run starts a zdb, attacks it and reports its memory.
func run(bin, name string, argsClients, mgetClients int, big []byte) result {
	r := result{name: name}
	dir := filepath.Join(work, name)
	s := start(bin, dir)
	defer s.stop()
	r.base, _ = s.memory()
	if mgetClients > 0 {
		c := s.dial()
		if v, err := c.do([]byte("SET"), []byte("big"), big); err != nil || v.Kind != resp.KindBulk {
			fatalf("%s: seeding the 8 MiB key: %v %v", name, v, err)
		}
		c.nc.Close()
	}

	stopProbe := make(chan struct{})
	var probeWG sync.WaitGroup
	probeWG.Add(1)
	go func() {
		defer probeWG.Done()
		c := s.dial()
		defer c.nc.Close()
		for i := 0; ; i++ {
			select {
			case <-stopProbe:
				return
			case <-time.After(50 * time.Millisecond):
			}
			begin := time.Now()
			key := []byte(fmt.Sprint("probe", i%10))
			for _, req := range [][][]byte{{[]byte("PING")}, {[]byte("SET"), key, []byte("small value")}, {[]byte("GET"), key}} {
				if v, err := c.do(req...); err != nil || v.Kind == resp.KindError {
					r.note = fmt.Sprintf("probe %s failed: %v %v", req[0], v, err)
					return
				}
			}
			r.probes++
			r.probeMax = max(r.probeMax, time.Since(begin))
		}
	}()

	begin := time.Now()
	var sent atomic.Int64
	var wg sync.WaitGroup
	var conns []net.Conn
	var mu sync.Mutex
	keep := func(nc net.Conn) {
		mu.Lock()
		conns = append(conns, nc)
		mu.Unlock()
	}
	header := []byte(fmt.Sprintf("$%d\r\n", len(big)))
	for i := 0; i < argsClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc := s.rawDial()
			keep(nc)
			deadline := time.Now().Add(*flagLimit)
			nc.SetWriteDeadline(deadline)
			w := func(b []byte) bool {
				n, err := nc.Write(b)
				sent.Add(int64(n))
				return err == nil
			}
			if !w([]byte("*1024\r\n")) {
				return
			}
			for j := 0; j < *flagArgs && time.Now().Before(deadline); j++ {
				if !w(header) || !w(big) || !w([]byte("\r\n")) {
					return
				}
			}
			w(header)
			w(big[:len(big)/2])
		}()
	}
	if mgetClients > 0 {
		req := [][]byte{[]byte("MGET")}
		for j := 0; j < *flagMGet; j++ {
			req = append(req, []byte("big"))
		}
		var buf bytes.Buffer
		rw := resp.NewWriter(&buf, 64<<10)
		rw.Command(req...)
		rw.Flush()
		for i := 0; i < mgetClients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc := s.rawDial()
				keep(nc)
				n, _ := nc.Write(buf.Bytes())
				sent.Add(int64(n))
			}()
		}
	}
	wg.Wait()
	r.dur = time.Since(begin)
	time.Sleep(*flagHold)
	_, r.peak = s.memory()
	mu.Lock()
	for _, nc := range conns {
		nc.Close()
	}
	mu.Unlock()
	close(stopProbe)
	probeWG.Wait()
	time.Sleep(2 * time.Second)
	r.after, _ = s.memory()
	if s.exited() {
		r.note = "zdb died: " + s.logTail()
	}
	r.sent = sent.Load()
	return r
}

// ---------------------------------------------------------------- zdb

type server struct {
	cmd  *exec.Cmd
	port int
	log  string
	done chan struct{}
}

// build compiles ./cmd/zdb of the module that holds the working directory
// and returns it with the commit it was built from.
func build() (string, string) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(gomod))
	if err != nil || mod == "" || mod == os.DevNull {
		fatalf("cannot find the module root (run inside the repository, or pass -bin): %v", err)
	}
	root := filepath.Dir(mod)
	bin := filepath.Join(work, "zdb")
	fmt.Fprintln(os.Stderr, "building zdb ...")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/zdb")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		fatalf("go build ./cmd/zdb: %v\n%s", err, b)
	}
	rev, _ := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	status, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	r := "(commit " + strings.TrimSpace(string(rev))
	if len(bytes.TrimSpace(status)) > 0 {
		r += ", with uncommitted changes"
	}
	return bin, r + ")"
}

func start(bin, dir string) *server {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &server{port: port, log: filepath.Join(work, filepath.Base(dir)+".log"), done: make(chan struct{})}
	logf, err := os.Create(s.log)
	if err != nil {
		fatalf("%v", err)
	}
	argv := []string{"--listen", "127.0.0.1", "--port", strconv.Itoa(port),
		"--data", filepath.Join(dir, "data"), "--index", filepath.Join(dir, "index")}
	argv = append(argv, strings.Fields(*flagZdbArgs)...)
	s.cmd = exec.Command(bin, argv...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		fatalf("start %s: %v", bin, err)
	}
	go func() { s.cmd.Wait(); logf.Close(); close(s.done) }()
	want := "zdb listening on 127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, _ := os.ReadFile(s.log); strings.Contains(string(b), want) {
			return s
		}
		if s.exited() || time.Now().After(deadline) {
			fatalf("zdb did not start:\n%s", s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// memory is VmRSS and VmHWM (the peak so far).
func (s *server) memory() (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return -1, -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak
}

func (s *server) rawDial() net.Conn {
	nc, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), 5*time.Second)
	if err != nil {
		fatalf("dial: %v", err)
	}
	return nc
}

type client struct {
	nc net.Conn
	w  *resp.Writer
	r  *resp.ReplyReader
}

func (s *server) dial() *client {
	nc := s.rawDial()
	return &client{nc: nc, w: resp.NewWriter(nc, 64<<10), r: resp.NewReplyReader(nc, 64<<10)}
}

func (c *client) do(args ...[]byte) (resp.Value, error) {
	c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	c.w.Command(args...)
	if err := c.w.Flush(); err != nil {
		return resp.Value{}, err
	}
	return c.r.ReadReply()
}

// ---------------------------------------------------------------- facts

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(si.Totalram)*float64(si.Unit)/(1<<30))
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return "Linux " + strings.TrimSpace(string(b))
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func revision(bin string) string {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return ""
	}
	rev, dirty := "", ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.HasPrefix(f[1], "vcs.revision=") {
			rev = strings.TrimPrefix(f[1], "vcs.revision=")
		}
		if len(f) == 2 && f[1] == "vcs.modified=true" {
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return "(commit unknown)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return "(commit " + rev + dirty + ")"
}

// ---------------------------------------------------------------- report

type report struct {
	facts   [][2]string
	results []result
}

func (r *report) fact(k, v string) { r.facts = append(r.facts, [2]string{k, v}) }

func (r *report) printFacts() {
	for _, f := range r.facts {
		fmt.Printf("%s: %s\n", f[0], f[1])
	}
}

func (r *report) add(x result) {
	r.results = append(r.results, x)
	fmt.Printf("%s: peak RSS %.0f MiB (at start %.0f MiB), %.0f MiB after 2 s idle; %.2f GiB sent in %v; probe: %d rounds, slowest %v %s\n",
		x.name, float64(x.peak)/mib, float64(x.base)/mib, float64(x.after)/mib, float64(x.sent)/(1<<30),
		x.dur.Round(time.Millisecond), x.probes, x.probeMax.Round(time.Millisecond), x.note)
}

func (r *report) markdown() []byte {
	var b bytes.Buffer
	for _, f := range r.facts {
		fmt.Fprintf(&b, "- %s: %s\n", f[0], f[1])
	}
	b.WriteString("\n| scenario | peak RSS | RSS at start | RSS after 2 s idle | sent | slowest probe (PING+SET+GET) | note |\n|---|---|---|---|---|---|---|\n")
	for _, x := range r.results {
		fmt.Fprintf(&b, "| %s | %.0f MiB | %.0f MiB | %.0f MiB | %.2f GiB | %v | %s |\n", x.name, float64(x.peak)/mib,
			float64(x.base)/mib, float64(x.after)/mib, float64(x.sent)/(1<<30), x.probeMax.Round(time.Millisecond), x.note)
	}
	return b.Bytes()
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "zdbattack: "+format+"\n", args...)
	if work != "" {
		os.RemoveAll(work)
	}
	os.Exit(1)
}
