// Command zdbmem measures zdb's memory per key and its reopen time.
//
// It starts a zdb on fresh data and index directories, reads its resident
// set size (VmRSS in /proc/PID/status), inserts -n distinct keys with
// pipelined SETs, reads the RSS again, stops the server with SIGTERM, starts
// it again on the same directories and measures how long it takes until it
// answers PING and until DBSIZE reports every key, then reads the RSS once
// more.
//
//	go run ./bench/zdbmem                       # builds ./cmd/zdb itself
//	go run ./bench/zdbmem -bin /tmp/zdb -mode seq -md mem.md
//
// In user mode the keys are "k%015d" (16 bytes) and the values "v%07d" (8
// bytes). In seq mode the server assigns 8-byte ids (SET "" value).
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"qss/internal/resp"
)

var (
	flagBin     = flag.String("bin", "", "zdb binary (default: go build ./cmd/zdb into a temporary directory)")
	flagMode    = flag.String("mode", "user", "zdb --mode: user or seq")
	flagN       = flag.Int("n", 1_000_000, "number of keys to insert")
	flagBatch   = flag.Int("batch", 1000, "SETs per pipelined batch")
	flagDir     = flag.String("dir", "", "parent of the temporary data/index directories (default $TMPDIR)")
	flagMD      = flag.String("md", "", "also write the results as markdown to this file")
	flagKeep    = flag.Bool("keep", false, "keep the temporary directory (data, index, logs)")
	flagSettle  = flag.Duration("settle", 3*time.Second, "idle time before the second RSS reading after the insert (0: skip)")
	flagTimeout = flag.Duration("timeout", 10*time.Minute, "abort everything after this long")
)

// server is one zdb process.
type server struct {
	cmd     *exec.Cmd
	port    int
	logPath string
	done    chan struct{}
	state   *os.ProcessState
	started time.Time
}

var (
	live   = map[*server]bool{}
	liveMu sync.Mutex
	work   string // temporary directory, removed at exit unless -keep
)

func main() {
	flag.Parse()
	if *flagMode != "user" && *flagMode != "seq" {
		fatalf("-mode must be user or seq")
	}
	if *flagN <= 0 || *flagBatch <= 0 {
		fatalf("-n and -batch must be positive")
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "zdbmem: %v, stopping\n", s)
		exit(130)
	}()
	time.AfterFunc(*flagTimeout, func() {
		fmt.Fprintf(os.Stderr, "zdbmem: overall timeout (%v) reached\n", *flagTimeout)
		exit(2)
	})

	var err error
	work, err = os.MkdirTemp(*flagDir, "zdbmem-")
	if err != nil {
		fatalf("%v", err)
	}
	bin := *flagBin
	if bin == "" {
		bin = build()
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}

	out := &report{}
	out.fact("date", time.Now().UTC().Format(time.RFC3339))
	out.fact("host", fmt.Sprintf("nproc=%d, cpu=%s", runtime.NumCPU(), cpuModel()))
	out.fact("kernel", kernel())
	out.fact("go", runtime.Version()+" (zdbmem)")
	out.fact("load average at start", loadavg())
	out.fact("zdb", bin+" "+revision(bin))
	out.fact("files on", fsType(work)+" ("+work+")")
	keyDesc := "16-byte keys k%015d"
	if *flagMode == "seq" {
		keyDesc = "server-assigned 8-byte ids"
	}
	out.fact("workload", fmt.Sprintf("--mode %s, %d %s, 8-byte values v%%07d, pipelined SETs in batches of %d",
		*flagMode, *flagN, keyDesc, *flagBatch))
	out.printFacts()

	dataDir, indexDir := filepath.Join(work, "data"), filepath.Join(work, "index")
	args := []string{"--data", dataDir, "--index", indexDir, "--mode", *flagMode}

	// First run: baseline, insert, RSS.
	s1 := start(bin, args, "zdb-1.log")
	if _, err := waitReady(s1, 30*time.Second, -1); err != nil {
		failf(s1, "zdb did not start: %v", err)
	}
	base := rss(s1)
	out.line("rss_baseline", base.String())

	t0 := time.Now()
	if err := insert(s1, *flagN, *flagBatch); err != nil {
		failf(s1, "insert: %v", err)
	}
	insertDur := time.Since(t0)
	out.line("insert", fmt.Sprintf("%d keys in %v (%.0f keys/s)", *flagN, insertDur.Round(time.Millisecond),
		float64(*flagN)/insertDur.Seconds()))
	if n, err := dbsize(s1); err != nil || n != int64(*flagN) {
		failf(s1, "DBSIZE after insert: %d, %v (want %d)", n, err, *flagN)
	}
	after := rss(s1)
	out.line("rss_after_insert", after.String())
	out.line("rss_per_key_delta", fmt.Sprintf("%.1f bytes ((after - baseline) / %d)",
		float64(after.rss-base.rss)/float64(*flagN), *flagN))
	out.line("rss_per_key_total", fmt.Sprintf("%.1f bytes (after / %d)", float64(after.rss)/float64(*flagN), *flagN))
	if *flagSettle > 0 {
		time.Sleep(*flagSettle)
		settled := rss(s1)
		out.line("rss_after_idle", fmt.Sprintf("%s, after %v idle; per key %.1f delta / %.1f total bytes",
			settled, *flagSettle, float64(settled.rss-base.rss)/float64(*flagN), float64(settled.rss)/float64(*flagN)))
	}

	stopDur, status, clean := stop(s1, 30*time.Second)
	if !clean {
		out.status = 1
	}
	out.line("stop", fmt.Sprintf("SIGTERM -> exit in %v, %s", stopDur.Round(time.Millisecond), status))
	out.line("disk", fmt.Sprintf("data %s, index %s", mib(dirSize(dataDir)), mib(dirSize(indexDir))))

	// Second run on the same directories: reopen time.
	s2 := start(bin, args, "zdb-2.log")
	ready, err := waitReady(s2, 120*time.Second, int64(*flagN))
	if err != nil {
		failf(s2, "reopen: %v", err)
	}
	out.line("reopen_ping", fmt.Sprintf("%v from exec to first PONG", ready.ping.Round(time.Millisecond)))
	out.line("reopen_dbsize", fmt.Sprintf("%v from exec to DBSIZE = %d%s", ready.full.Round(time.Millisecond),
		*flagN, ready.note))
	reopened := rss(s2)
	out.line("rss_after_reopen", fmt.Sprintf("%s; per key %.1f bytes (rss / %d)", reopened,
		float64(reopened.rss)/float64(*flagN), *flagN))
	if *flagSettle > 0 {
		time.Sleep(*flagSettle)
		settled := rss(s2)
		out.line("rss_reopen_idle", fmt.Sprintf("%s, after %v idle; per key %.1f bytes (rss / %d)",
			settled, *flagSettle, float64(settled.rss)/float64(*flagN), *flagN))
	}
	if err := spotCheck(s2, *flagN); err != nil {
		out.line("spot_check", "FAILED: "+err.Error())
		out.status = 1
	} else {
		out.line("spot_check", "GET of the first, middle and last key after reopen: ok")
	}
	stopDur, status, clean = stop(s2, 30*time.Second)
	if !clean {
		out.status = 1
	}
	out.line("stop_after_reopen", fmt.Sprintf("SIGTERM -> exit in %v, %s", stopDur.Round(time.Millisecond), status))

	out.line("load_average_end", loadavg())
	for _, s := range []*server{s1, s2} {
		if lines := logHead(s, 6); len(lines) > 0 {
			out.line("log "+filepath.Base(s.logPath), "")
			for _, l := range lines {
				out.raw("    " + l)
			}
		}
	}
	if *flagMD != "" {
		if err := os.WriteFile(*flagMD, out.markdown(), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "zdbmem: %v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "wrote %s\n", *flagMD)
		}
	}
	exit(out.status)
}

// build compiles ./cmd/zdb of the module that holds the working directory.
func build() string {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		fatalf("cannot find the module root (run inside the repository, or pass -bin): %v", err)
	}
	bin := filepath.Join(work, "zdb")
	fmt.Fprintln(os.Stderr, "building zdb ...")
	cmd := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, "./cmd/zdb")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		fatalf("go build ./cmd/zdb: %v\n%s", err, b)
	}
	return bin
}

func start(bin string, args []string, logName string) *server {
	port := freePort()
	s := &server{port: port, logPath: filepath.Join(work, logName), done: make(chan struct{})}
	logf, err := os.Create(s.logPath)
	if err != nil {
		fatalf("%v", err)
	}
	argv := append([]string{"--listen", "127.0.0.1", "--port", strconv.Itoa(port)}, args...)
	s.cmd = exec.Command(bin, argv...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// The server dies with us, whatever kills us.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		fatalf("start %s: %v", bin, err)
	}
	liveMu.Lock()
	live[s] = true
	liveMu.Unlock()
	go func() {
		s.cmd.Wait()
		logf.Close()
		s.state = s.cmd.ProcessState
		close(s.done)
	}()
	return s
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

type readiness struct {
	ping, full time.Duration // since exec: first PONG, DBSIZE == want
	note       string
}

// waitReady polls until the server answers PING and, when want >= 0, until
// DBSIZE reports want. Times are measured from exec.
func waitReady(s *server, timeout time.Duration, want int64) (readiness, error) {
	var r readiness
	deadline := s.started.Add(timeout)
	var c *client
	for c == nil {
		if s.exited() {
			return r, fmt.Errorf("zdb exited: %v", s.state)
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("no PONG on %s within %v", s.addr(), timeout)
		}
		cc, err := dial(s, 2*time.Second)
		if err == nil {
			v, err := cc.do([]byte("PING"))
			if err == nil && v.Kind == resp.KindSimple && string(v.Str) == "PONG" {
				r.ping = time.Since(s.started)
				c = cc
				break
			}
			if err == nil {
				r.note += fmt.Sprintf("; PING answered %v", v)
			}
			cc.conn.Close()
		}
		time.Sleep(2 * time.Millisecond)
	}
	defer c.conn.Close()
	if want < 0 {
		return r, nil
	}
	first := true
	for {
		v, err := c.do([]byte("DBSIZE"))
		if err != nil {
			return r, fmt.Errorf("DBSIZE: %v", err)
		}
		if v.Kind == resp.KindInteger && v.Int == want {
			r.full = time.Since(s.started)
			return r, nil
		}
		if first {
			r.note += fmt.Sprintf(" (first DBSIZE answered %v)", v)
			first = false
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("DBSIZE still %v after %v, want %d", v, timeout, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type client struct {
	conn net.Conn
	w    *resp.Writer
	r    *resp.ReplyReader
}

func dial(s *server, timeout time.Duration) (*client, error) {
	conn, err := net.DialTimeout("tcp", s.addr(), timeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	return &client{conn: conn, w: resp.NewWriter(conn, 64<<10), r: resp.NewReplyReader(conn, 64<<10)}, nil
}

// do sends one command and reads its reply, within 10 s.
func (c *client) do(args ...[]byte) (resp.Value, error) {
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	c.w.Command(args...)
	if err := c.w.Flush(); err != nil {
		return resp.Value{}, err
	}
	return c.r.ReadReply()
}

func dbsize(s *server) (int64, error) {
	c, err := dial(s, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.conn.Close()
	v, err := c.do([]byte("DBSIZE"))
	if err != nil {
		return 0, err
	}
	if v.Kind != resp.KindInteger {
		return 0, fmt.Errorf("DBSIZE answered %v", v)
	}
	return v.Int, nil
}

func userKey(buf []byte, i int) []byte { return fmt.Appendf(buf[:0], "k%015d", i) }
func value(buf []byte, i int) []byte   { return fmt.Appendf(buf[:0], "v%07d", i) }

// insert writes n keys over one connection, batch SETs per round trip, and
// checks every reply.
func insert(s *server, n, batch int) error {
	c, err := dial(s, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	set := []byte("SET")
	var kb, vb [32]byte
	seq := *flagMode == "seq"
	for i := 0; i < n; i += batch {
		m := min(batch, n-i)
		c.conn.SetDeadline(time.Now().Add(60 * time.Second))
		for j := i; j < i+m; j++ {
			key := []byte{}
			if !seq {
				key = userKey(kb[:], j)
			}
			c.w.Command(set, key, value(vb[:], j))
		}
		if err := c.w.Flush(); err != nil {
			return fmt.Errorf("write batch at key %d: %w", i, err)
		}
		for j := i; j < i+m; j++ {
			v, err := c.r.ReadReply()
			if err != nil {
				return fmt.Errorf("reply to SET #%d: %w", j, err)
			}
			ok := v.Kind == resp.KindBulk && !v.Nil
			if ok && seq {
				ok = len(v.Str) == 8
			} else if ok {
				ok = bytes.Equal(v.Str, userKey(kb[:], j))
			}
			if !ok {
				return fmt.Errorf("SET #%d answered %v", j, v)
			}
		}
	}
	return nil
}

// spotCheck reads back the first, middle and last keys. In seq mode, with
// no updates, the i-th SET got id i (8 bytes little-endian).
func spotCheck(s *server, n int) error {
	c, err := dial(s, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	var kb, vb [32]byte
	for _, i := range []int{0, n / 2, n - 1} {
		key := userKey(kb[:], i)
		if *flagMode == "seq" {
			key = binary.LittleEndian.AppendUint64(kb[:0], uint64(i))
		}
		v, err := c.do([]byte("GET"), key)
		if err != nil {
			return err
		}
		if v.Kind != resp.KindBulk || !bytes.Equal(v.Str, value(vb[:], i)) {
			return fmt.Errorf("GET %q answered %v", key, v)
		}
	}
	return nil
}

// stop sends SIGTERM and waits up to timeout, then SIGKILL. clean reports
// that the server exited with status 0 on SIGTERM.
func stop(s *server, timeout time.Duration) (d time.Duration, status string, clean bool) {
	t0 := time.Now()
	defer func() {
		liveMu.Lock()
		delete(live, s)
		liveMu.Unlock()
	}()
	if s.exited() {
		return 0, fmt.Sprintf("had already exited: %v", s.state), false
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return time.Since(t0), s.state.String(), s.state.Success()
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.done
		return time.Since(t0), fmt.Sprintf("did NOT exit within %v of SIGTERM, killed", timeout), false
	}
}

type memInfo struct{ rss, anon, file, hwm int64 } // bytes

func (m memInfo) String() string {
	return fmt.Sprintf("VmRSS %s (RssAnon %s, RssFile %s; VmHWM %s)", mib(m.rss), mib(m.anon), mib(m.file), mib(m.hwm))
}

func rss(s *server) memInfo {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		failf(s, "read /proc status: %v", err)
	}
	var m memInfo
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kib, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kib << 10
		case "RssAnon:":
			m.anon = kib << 10
		case "RssFile:":
			m.file = kib << 10
		case "VmHWM:":
			m.hwm = kib << 10
		}
	}
	return m
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func logHead(s *server, n int) []string {
	b, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("... (%d more lines in %s)", len(lines)-n, s.logPath))
	}
	return lines
}

func logTail(s *server, n int) string {
	b, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------- facts

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernel() string {
	read := func(f string) string {
		b, _ := os.ReadFile(f)
		return strings.TrimSpace(string(b))
	}
	return read("/proc/sys/kernel/ostype") + " " + read("/proc/sys/kernel/osrelease") + " " + runtime.GOARCH
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
	b, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return "(rev unknown)"
	}
	var rev, mod, gover string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.HasSuffix(f[0], ":") {
			gover = f[1]
		}
		if len(f) == 2 && strings.HasPrefix(f[1], "vcs.") {
			if k, v, ok := strings.Cut(f[1], "="); ok {
				switch k {
				case "vcs.revision":
					rev = v
				case "vcs.modified":
					mod = v
				}
			}
		}
	}
	if rev == "" {
		return fmt.Sprintf("(built with %s, rev unknown)", gover)
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if mod == "true" {
		rev += "+dirty"
	}
	return fmt.Sprintf("(built with %s, rev %s)", gover, rev)
}

func fsType(dir string) string {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return "unknown fs"
	}
	switch st.Type {
	case 0xEF53:
		return "ext4"
	case 0x01021994:
		return "tmpfs"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("fs 0x%x", st.Type)
}

// ---------------------------------------------------------------- output

type report struct {
	facts  [][2]string
	lines  [][2]string
	status int
}

func (r *report) fact(k, v string) { r.facts = append(r.facts, [2]string{k, v}) }

func (r *report) printFacts() {
	for _, f := range r.facts {
		fmt.Printf("%s: %s\n", f[0], f[1])
	}
	fmt.Println()
}

func (r *report) line(k, v string) {
	r.lines = append(r.lines, [2]string{k, v})
	fmt.Printf("%-18s %s\n", k+":", v)
}

func (r *report) raw(s string) {
	r.lines = append(r.lines, [2]string{"", s})
	fmt.Println(s)
}

func (r *report) markdown() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "## zdb memory per key and reopen time (bench/zdbmem)\n\n")
	for _, f := range r.facts {
		fmt.Fprintf(&b, "- %s: %s\n", f[0], f[1])
	}
	fmt.Fprintf(&b, "\n| measure | value |\n|---|---|\n")
	var logs []string
	for _, l := range r.lines {
		switch {
		case l[0] == "" || strings.HasPrefix(l[0], "log "):
			logs = append(logs, l[0]+l[1])
		default:
			fmt.Fprintf(&b, "| %s | %s |\n", l[0], strings.ReplaceAll(l[1], "|", "\\|"))
		}
	}
	if len(logs) > 0 {
		fmt.Fprintf(&b, "\nServer output:\n\n```\n%s\n```\n", strings.Join(logs, "\n"))
	}
	return b.Bytes()
}

// ---------------------------------------------------------------- exits

// failf reports a server problem with the end of its log and exits.
func failf(s *server, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "zdbmem: "+format+"\n", args...)
	if s.exited() {
		fmt.Fprintf(os.Stderr, "zdb exited: %v\n", s.state)
	}
	fmt.Fprintf(os.Stderr, "last lines of %s:\n%s\n", s.logPath, logTail(s, 30))
	exit(1)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "zdbmem: "+format+"\n", args...)
	exit(1)
}

var exitOnce sync.Once

// exit kills every server still running, removes the temporary directory
// unless -keep, and exits.
func exit(code int) {
	exitOnce.Do(func() {
		liveMu.Lock()
		for s := range live {
			if !s.exited() {
				s.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-s.done:
				case <-time.After(10 * time.Second):
					s.cmd.Process.Kill()
					<-s.done
				}
			}
		}
		liveMu.Unlock()
		if work != "" {
			if *flagKeep || code != 0 && code != 130 {
				fmt.Fprintf(os.Stderr, "kept %s\n", work)
			} else {
				os.RemoveAll(work)
			}
		}
		os.Exit(code)
	})
	select {} // another goroutine is exiting
}
