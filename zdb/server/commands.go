package server

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"qss/internal/resp"
	"qss/zdb"
)

var errTooManyFiles = syscall.EMFILE

// Reply texts of the protocol layer (the engine's are zdb.Error values).
const (
	errUnexpectedArgs  = "Unexpected arguments"
	errInvalidArgument = "Invalid argument"
	errPermission      = "Permission denied"
	errReadOnly        = "Namespace is in read-only mode"
	errNotSupported    = "Command not supported"
	errNotValidCommand = "This is not a valid command"
	errAccessDenied    = "Access denied"
	errAuthDisabled    = "Authentication disabled"
	errNoChallenge     = "No CHALLENGE requested, secure authentication not available"
	errProtected       = "Namespace protected and private"
	errPasswordLong    = "Password too long"
	errOnlySecure      = "Only SECURE extra method supported"
	errHashLength      = "Invalid hash length"
	errInvalidTimeout  = "Invalid timeout"
	errTimeout         = "Timeout"
	errFlushPublic     = "Flushing public namespace denied"
	errCurrentNS       = "Cannot remove namespace you're currently using."
	errUnknownWatch    = "Unknown command to watch"
	errAccessChanged   = "Namespace access changed, select it again"
)

// command is one entry of the command table.
type command struct {
	name    string // upper case, as WAIT reports it
	handler func(c *session, args [][]byte)
	// onNS marks the commands that act on the selected namespace: they are
	// refused once the session's access to it was ended (see checkAccess).
	onNS bool
}

// commands is 0-db's command table, in its order: a command name matches
// the first entry it is a case-insensitive prefix of (G is GET, DE is DEL,
// NSL is NSLIST), as 0-db's strncasecmp loop does. The order is that of
// zdbd/commands.c; DATA, KEYTIME, LENGTH and NSJUMP were added in 0-db
// after the newest source we could read, and sit after INDEX, KEYCUR,
// KEYTIME and NSINFO (this decides only the bare prefixes D, which is
// DATA, and KEY, which is KEYCUR). MIRROR, MASTER and KSCAN are 0-db
// commands we do not implement: they stay in the table so that M and K
// resolve as in 0-db, and answer -Command not supported. Our own
// commands come last, so that they never shadow a 0-db prefix.
var commands []command

func init() {
	commands = []command{
		{"*", cmdAsterisk, false},
		{"WAIT", cmdWait, true},
		{"MIRROR", nil, false},
		{"MASTER", nil, false},
		{"PING", cmdPing, false},
		{"TIME", cmdTime, false},
		{"AUTH", cmdAuth, false},
		{"HOOKS", cmdHooks, false},
		{"INDEX", cmdIndex, true},
		{"DATA", cmdData, true},
		{"SET", cmdSet, true},
		{"SETX", cmdSet, true},
		{"GET", cmdGet, true},
		{"MGET", cmdMGet, true},
		{"DEL", cmdDel, true},
		{"EXISTS", cmdExists, true},
		{"CHECK", cmdCheck, true},
		{"SCAN", cmdScan, true},
		{"SCANX", cmdScan, true},
		{"RSCAN", cmdRScan, true},
		{"KSCAN", nil, true},
		{"HISTORY", cmdHistory, true},
		{"KEYCUR", cmdKeyCur, true},
		{"KEYTIME", cmdKeyTime, true},
		{"LENGTH", cmdLength, true},
		{"INFO", cmdInfo, false},
		{"STOP", cmdStop, false},
		{"DBSIZE", cmdDBSize, true},
		{"NSNEW", cmdNSNew, false},
		{"NSDEL", cmdNSDel, false},
		{"NSLIST", cmdNSList, false},
		{"NSSET", cmdNSSet, false},
		{"NSINFO", cmdNSInfo, false},
		{"NSJUMP", cmdNSJump, true},
		{"SELECT", cmdSelect, false},
		{"RELOAD", cmdReload, false},
		{"FLUSH", cmdFlush, true},
		// ours
		{"COMPACT", cmdCompact, true},
	}
}

// lookup finds the command name designates: the first entry of the table
// that name matches as strncasecmp(name, entry, len(name)) does in 0-db,
// that is name is a case-insensitive prefix of the entry, or the whole
// entry followed by a NUL byte (strncasecmp stops at a NUL). An empty name
// matches the first entry, "*".
func lookup(name []byte) *command {
	for i := range commands {
		if nameMatches(name, commands[i].name) {
			return &commands[i]
		}
	}
	return nil
}

func nameMatches(name []byte, entry string) bool {
	for i, b := range name {
		var e byte // the terminating NUL past the end of entry
		if i < len(entry) {
			e = entry[i]
		}
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		if b != e {
			return false
		}
		if b == 0 {
			return true
		}
	}
	return true
}

// dispatch runs one request.
func (c *session) dispatch(args [][]byte) {
	c.srv.stats.executed.Add(1)
	if c.ns.Deleted() {
		c.fail(string(zdb.ErrNamespaceGone))
		c.quit = true
		return
	}
	cmd := lookup(args[0])
	if cmd == nil {
		c.fail(errNotSupported)
		return
	}
	switch {
	case cmd.handler == nil:
		c.fail(errNotSupported)
	case cmd.onNS && !c.checkAccess():
		c.fail(errAccessChanged)
	default:
		cmd.handler(c, args)
	}
	// Like 0-db, every command the table knows wakes the WAITs of the
	// other clients on the (now) selected namespace, even a failed one.
	if c.srv.waiters.active() {
		c.srv.waiters.notify(c, cmd)
	}
}

// cmdAsterisk is the "*" entry, which WAIT uses to match every command.
func cmdAsterisk(c *session, args [][]byte) {
	c.fail(errNotValidCommand)
}

func (c *session) fail(text string) {
	c.srv.stats.failed.Add(1)
	c.w.Error(text)
}

// reply sends err as its 0-db error reply.
func (c *session) replyErr(err error) {
	var ze zdb.Error
	if errors.As(err, &ze) {
		c.fail(string(ze))
		return
	}
	c.srv.log.Error("command failed", "err", err)
	c.fail(string(zdb.ErrInternal))
}

// argc checks the argument count is within [lo, hi].
func (c *session) argc(args [][]byte, lo, hi int) bool {
	if len(args) < lo || len(args) > hi {
		c.fail(errUnexpectedArgs)
		return false
	}
	return true
}

// nonEmpty checks that the arguments from index 1 on are not empty.
func (c *session) nonEmpty(args [][]byte) bool {
	for _, a := range args[1:] {
		if len(a) == 0 {
			c.fail(errInvalidArgument)
			return false
		}
	}
	return true
}

func (c *session) requireAdmin() bool {
	if !c.admin {
		c.srv.stats.unauthorized.Add(1)
		c.fail(errPermission)
		return false
	}
	return true
}

// readKey checks a key argument of a read command.
func (c *session) readKey(key []byte) bool {
	if len(key) == 0 {
		c.fail(errInvalidArgument)
		return false
	}
	if len(key) > zdb.MaxKeyLen {
		c.fail(string(zdb.ErrInvalidKey))
		return false
	}
	return true
}

// parseTimestamp reads a timestamp argument as 0-db does: atoll (leading
// blanks and sign, then the leading digits, saturating at the int64
// limits; anything else is 0), stored in a u32 (truncated).
func parseTimestamp(b []byte) uint32 {
	i := 0
	for i < len(b) && (b[i] == ' ' || (b[i] >= '\t' && b[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var n int64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := int64(b[i] - '0')
		if neg {
			if n < (math.MinInt64+d)/10 {
				n = math.MinInt64
				break
			}
			n = n*10 - d
		} else {
			if n > (math.MaxInt64-d)/10 {
				n = math.MaxInt64
				break
			}
			n = n*10 + d
		}
	}
	return uint32(n)
}

func cmdPing(c *session, args [][]byte) {
	c.w.Simple("PONG") // extra arguments ignored, as in 0-db
}

func cmdTime(c *session, args [][]byte) {
	now := time.Now() // extra arguments ignored, as in 0-db
	c.w.Array(2)
	c.w.BulkString(strconv.FormatInt(now.Unix(), 10))
	c.w.BulkString(strconv.FormatInt(int64(now.Nanosecond()/1000), 10))
}

func cmdSet(c *session, args [][]byte) {
	if !c.argc(args, 3, 4) {
		return
	}
	var ts uint32
	explicit := len(args) == 4
	if explicit {
		if !c.requireAdmin() {
			return
		}
		ts = parseTimestamp(args[3])
	}
	if len(args[1]) > zdb.MaxKeyLen {
		c.fail(string(zdb.ErrKeyTooLarge))
		return
	}
	if !c.writable {
		c.fail(errReadOnly)
		return
	}
	set := c.ns.SetDeferred
	if explicit {
		set = c.ns.SetDeferredAt // 0 is stored as 0, as in 0-db
	}
	key, t, err := set(args[1], args[2], ts)
	if err != nil {
		c.replyErr(err)
		return
	}
	if key == nil {
		c.w.Nil() // unchanged: nothing written
		return
	}
	c.w.ackWrite(c.ns, t, func() { c.w.Bulk(key) })
}

func cmdGet(c *session, args [][]byte) {
	if !c.argc(args, 2, 2) || !c.readKey(args[1]) {
		return
	}
	v, done, err := c.readValue(args[1])
	switch {
	case errors.Is(err, zdb.ErrNotFound):
		c.w.Nil()
	case err != nil:
		c.valueErr(err)
	default:
		c.w.Bulk(v)
		done()
	}
}

func noop() {}

// readValue reads key's payload. One above directBulk bytes is read into a
// buffer of the memory budget (memory.go), which done gives back once the
// reply is written; a smaller one into the session's reused buffer.
func (c *session) readValue(key []byte) (v []byte, done func(), err error) {
	info, err := c.ns.Stat(key)
	if err != nil {
		return nil, noop, err
	}
	n := int(info.Length)
	if n <= directBulk {
		v, err := c.ns.Get(key, c.value[:0])
		if err == nil && cap(v) <= keepBuf {
			c.value = v[:0]
		}
		return v, noop, err
	}
	buf, err := c.take(n)
	if err != nil {
		return nil, noop, err
	}
	// A concurrent SET may have changed the length: Get then reads into a
	// buffer of its own, and buf goes back as it came.
	v, err = c.ns.Get(key, buf[:0])
	if err != nil {
		c.give(buf)
		return nil, noop, err
	}
	return v, func() { c.give(buf) }, nil
}

// valueErr answers a failed readValue.
func (c *session) valueErr(err error) {
	var ze zdb.Error
	if errors.As(err, &ze) {
		c.replyErr(err)
		return
	}
	c.memoryErr(err)
}

func cmdMGet(c *session, args [][]byte) {
	if len(args) < 2 {
		c.fail(string(zdb.ErrInvalidArguments))
		return
	}
	// 0-db checks every key before reading any.
	for _, key := range args[1:] {
		if len(key) > zdb.MaxKeyLen {
			c.fail(string(zdb.ErrInvalidKey))
			return
		}
	}
	// Everything that makes the whole MGET fail is found before the reply
	// starts (a frozen namespace, a value the budget cannot hold); then the
	// values are read and sent one at a time, never all held at once.
	for _, key := range args[1:] {
		if len(key) == 0 {
			continue
		}
		info, err := c.ns.Stat(key)
		switch {
		case errors.Is(err, zdb.ErrNotFound):
		case err != nil:
			c.replyErr(err)
			return
		case int64(info.Length) > c.srv.mem.limit:
			c.fail(errTooLarge)
			return
		}
	}
	c.w.Array(len(args) - 1)
	for _, key := range args[1:] {
		if c.w.err != nil {
			return // the client is gone: read no more values for it
		}
		if len(key) == 0 {
			c.w.Nil()
			continue
		}
		v, done, err := c.readValue(key)
		var ze zdb.Error
		switch {
		case errors.Is(err, zdb.ErrNotFound):
			c.w.Nil()
		case errors.As(err, &ze):
			// The reply has started: an unreadable value is an error
			// element in its place.
			c.fail(string(ze))
		case err != nil:
			var pe *resp.ProtocolError
			if !errors.As(err, &pe) {
				c.quit = true // closing: the connection ends
				return
			}
			c.fail(pe.Text)
		default:
			c.w.Bulk(v)
			done()
		}
	}
}

func cmdDel(c *session, args [][]byte) {
	if !c.argc(args, 2, 3) {
		return
	}
	var ts uint32
	if len(args) == 3 {
		if !c.requireAdmin() {
			return
		}
		ts = parseTimestamp(args[2])
	}
	if !c.readKey(args[1]) {
		return
	}
	if !c.writable {
		c.fail(errReadOnly)
		return
	}
	t, err := c.ns.DelDeferred(args[1], ts)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.w.ackWrite(c.ns, t, func() { c.w.Simple("OK") })
}

// stat runs Stat for EXISTS, LENGTH and KEYTIME; found is false after a nil
// or error reply has been handled by missing.
func (c *session) stat(args [][]byte) (zdb.EntryInfo, bool, bool) {
	if !c.argc(args, 2, 2) || !c.readKey(args[1]) {
		return zdb.EntryInfo{}, false, false
	}
	info, err := c.ns.Stat(args[1])
	if errors.Is(err, zdb.ErrNotFound) {
		return info, false, true
	}
	if err != nil {
		c.replyErr(err)
		return info, false, false
	}
	return info, true, true
}

func cmdExists(c *session, args [][]byte) {
	_, found, ok := c.stat(args)
	if !ok {
		return
	}
	if found {
		c.w.Int(1)
	} else {
		c.w.Int(0)
	}
}

func cmdLength(c *session, args [][]byte) {
	c.statInt(args, func(i zdb.EntryInfo) uint32 { return i.Length })
}

func cmdKeyTime(c *session, args [][]byte) {
	c.statInt(args, func(i zdb.EntryInfo) uint32 { return i.Timestamp })
}

// statInt replies with one field of a key's description, or nil when the
// key is missing.
func (c *session) statInt(args [][]byte, field func(zdb.EntryInfo) uint32) {
	info, found, ok := c.stat(args)
	if !ok {
		return
	}
	if !found {
		c.w.Nil()
		return
	}
	c.w.Int(int64(field(info)))
}

func cmdCheck(c *session, args [][]byte) {
	if !c.argc(args, 2, 2) || !c.readKey(args[1]) {
		return
	}
	// Check reads the payload: its memory comes from the budget.
	if info, err := c.ns.Stat(args[1]); err == nil && info.Length > directBulk {
		n := int(info.Length)
		if err := c.reserve(n); err != nil {
			c.memoryErr(err)
			return
		}
		defer c.srv.mem.release(int64(n))
	}
	r, err := c.ns.Check(args[1])
	if errors.Is(err, zdb.ErrNotFound) {
		c.w.Nil()
		return
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	c.w.Int(int64(r))
}

func cmdKeyCur(c *session, args [][]byte) {
	if !c.argc(args, 2, 2) || !c.readKey(args[1]) {
		return
	}
	cur, err := c.ns.KeyCursor(args[1])
	if err != nil {
		c.replyErr(err)
		return
	}
	c.w.Bulk(cur)
}

// scanBatch bounds the keys of one SCAN reply.
const scanBatch = 1000

func cmdScan(c *session, args [][]byte)  { c.scan(args, false) }
func cmdRScan(c *session, args [][]byte) { c.scan(args, true) }

func (c *session) scan(args [][]byte, reverse bool) {
	if !c.argc(args, 1, 2) {
		return
	}
	var cursor []byte
	if len(args) == 2 {
		cursor = args[1]
	}
	items, next, err := c.ns.Scan(cursor, reverse, scanBatch)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.w.Array(2)
	c.w.Bulk(next)
	c.w.Array(len(items))
	for _, it := range items {
		c.w.Array(3)
		c.w.Bulk(it.Key)
		c.w.Int(int64(it.Length))
		c.w.Int(int64(it.Timestamp))
	}
}

func cmdHistory(c *session, args [][]byte) {
	if !c.argc(args, 2, 3) || !c.readKey(args[1]) {
		return
	}
	var ekey []byte
	if len(args) == 3 {
		ekey = args[2]
		if len(ekey) != 8 {
			c.fail(string(zdb.ErrInvalidArguments))
			return
		}
	}
	h, err := c.ns.History(args[1], ekey)
	if err != nil {
		c.replyErr(err)
		return
	}
	if !c.holdPayload(len(h.Payload)) {
		return
	}
	defer c.dropPayload(len(h.Payload))
	c.w.Array(3)
	if h.Parent == nil {
		c.w.Nil()
	} else {
		c.w.Bulk(h.Parent)
	}
	c.w.BulkString(strconv.FormatUint(uint64(h.Timestamp), 10))
	c.w.Bulk(h.Payload)
}

// holdPayload counts in the budget a payload the engine read (HISTORY,
// DATA RAW: its length is known only then) while the reply carries it.
func (c *session) holdPayload(n int) bool {
	if n <= directBulk {
		return true
	}
	if err := c.reserve(n); err != nil {
		c.memoryErr(err)
		return false
	}
	return true
}

func (c *session) dropPayload(n int) {
	if n > directBulk {
		c.srv.mem.release(int64(n))
	}
}

func cmdDBSize(c *session, args [][]byte) {
	c.w.Int(int64(c.ns.Len())) // extra arguments ignored, as in 0-db
}

func cmdInfo(c *session, args [][]byte) {
	// Extra arguments (a section name) are ignored, as in 0-db.
	s := c.srv
	st := s.eng.Stats().Snapshot()
	idxR, idxW, dataR, dataW := st.IndexRead, st.IndexWritten, st.DataRead, st.DataWritten
	var b strings.Builder
	w := func(k string, v any) { fmt.Fprintf(&b, "%s: %v\n", k, v) }
	mb := func(n uint64) string { return fmt.Sprintf("%.2f", float64(n)/(1024*1024)) }
	b.WriteString("# server\n")
	w("server_name", "0-db (zdb)")
	w("server_revision", Version)
	w("engine_revision", Version)
	w("instance_id", s.instance)
	w("boot_time", s.boot.Unix())
	w("uptime", int64(time.Since(s.boot).Seconds()))
	b.WriteString("\n# clients\n")
	w("clients_lifetime", s.stats.clients.Load())
	b.WriteString("\n# internals\n")
	w("sequential_key_size", 8)
	w("data_version", zdb.DataVersion)
	w("index_version", zdb.IndexVersion)
	b.WriteString("\n# stats\n")
	w("commands_executed", s.stats.executed.Load())
	w("commands_failed", s.stats.failed.Load())
	w("commands_unauthorized", s.stats.unauthorized.Load())
	w("index_disk_read_failed", st.IndexReadFailed)
	w("index_disk_write_failed", st.IndexWriteFailed)
	w("data_disk_read_failed", st.DataReadFailed)
	w("data_disk_write_failed", st.DataWriteFailed)
	w("index_disk_read_bytes", idxR)
	w("index_disk_read_mb", mb(idxR))
	w("index_disk_write_bytes", idxW)
	w("index_disk_write_mb", mb(idxW))
	w("data_disk_read_bytes", dataR)
	w("data_disk_read_mb", mb(dataR))
	w("data_disk_write_bytes", dataW)
	w("data_disk_write_mb", mb(dataW))
	w("network_rx_bytes", s.stats.rx.Load())
	w("network_rx_mb", mb(s.stats.rx.Load()))
	w("network_tx_bytes", s.stats.tx.Load())
	w("network_tx_mb", mb(s.stats.tx.Load()))
	c.w.BulkString(b.String())
}

// nsArg checks a namespace name argument.
func (c *session) nsArg(name []byte) bool {
	if len(name) > zdb.MaxNameLen {
		c.fail(string(zdb.ErrNameTooLong))
		return false
	}
	return true
}

func cmdNSNew(c *session, args [][]byte) {
	if !c.argc(args, 2, 2) || !c.nonEmpty(args) || !c.requireAdmin() || !c.nsArg(args[1]) {
		return
	}
	if err := c.srv.eng.CreateNamespace(string(args[1])); err != nil {
		c.replyErr(err)
		return
	}
	c.w.Simple("OK")
}

func cmdNSDel(c *session, args [][]byte) {
	if !c.argc(args, 2, 2) || !c.nonEmpty(args) || !c.requireAdmin() || !c.nsArg(args[1]) {
		return
	}
	name := string(args[1])
	if name == zdb.DefaultNamespace {
		c.fail(string(zdb.ErrDeleteDefault))
		return
	}
	if c.srv.eng.Namespace(name) == nil {
		c.fail(string(zdb.ErrNoSuchNamespace))
		return
	}
	if c.ns.Name() == name {
		c.fail(errCurrentNS)
		return
	}
	ns := c.srv.eng.Namespace(name)
	if err := c.srv.eng.DeleteNamespace(name); err != nil {
		c.replyErr(err)
		return
	}
	c.srv.access.Delete(ns)
	// Sessions still on it get ErrNamespaceGone on their next command and
	// are disconnected then (dispatch), as in 0-db.
	c.w.Simple("OK")
}

func cmdNSList(c *session, args [][]byte) {
	// Extra arguments are ignored, as in 0-db.
	names := c.srv.eng.Namespaces()
	c.w.Array(len(names))
	for _, n := range names {
		c.w.BulkString(n)
	}
}

func cmdNSInfo(c *session, args [][]byte) {
	if !c.argc(args, 2, 2) || !c.nonEmpty(args) || !c.nsArg(args[1]) {
		return
	}
	ns := c.srv.eng.Namespace(string(args[1]))
	if ns == nil {
		c.fail(string(zdb.ErrNamespaceNotFound))
		return
	}
	c.w.BulkString(ns.Info(c.admin))
}

func cmdNSSet(c *session, args [][]byte) {
	if !c.argc(args, 4, 4) || !c.nonEmpty(args) || !c.requireAdmin() || !c.nsArg(args[1]) {
		return
	}
	ns := c.srv.eng.Namespace(string(args[1]))
	if ns == nil {
		c.fail(string(zdb.ErrNamespaceNotFound))
		return
	}
	prop := string(args[2])
	if err := ns.SetProperty(prop, string(args[3])); err != nil {
		c.replyErr(err)
		return
	}
	switch {
	case prop == "password":
		c.srv.accessOf(ns).changed(c, ns, false)
	case prop == "public" && !ns.Settings().Public:
		c.srv.accessOf(ns).changed(c, ns, true)
	}
	c.srv.eng.NamespaceUpdated(ns.Name())
	c.w.Simple("OK")
}

func cmdNSJump(c *session, args [][]byte) {
	if !c.requireAdmin() { // extra arguments ignored, as in 0-db
		return
	}
	if err := c.ns.Jump(); err != nil {
		c.replyErr(err)
		return
	}
	c.w.Simple("OK")
}

// cmdCompact compacts the selected namespace (ours, admin only) and answers
// once done with what it did, as "key: value" lines.
func cmdCompact(c *session, args [][]byte) {
	if !c.argc(args, 1, 1) || !c.requireAdmin() {
		return
	}
	st, err := c.ns.Compact(context.Background())
	if err != nil {
		c.replyErr(err)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "files_compacted: %d\n", len(st.Victims))
	fmt.Fprintf(&b, "files_retired: %d\n", len(st.Retired))
	fmt.Fprintf(&b, "entries_copied: %d\n", st.EntriesCopied)
	fmt.Fprintf(&b, "bytes_copied: %d\n", st.BytesCopied)
	fmt.Fprintf(&b, "tombstones_kept: %d\n", st.Tombstones)
	fmt.Fprintf(&b, "entries_unreadable: %d\n", st.Skipped)
	fmt.Fprintf(&b, "data_bytes_before: %d\n", st.BytesBefore)
	fmt.Fprintf(&b, "data_bytes_after: %d\n", st.BytesAfter)
	fmt.Fprintf(&b, "bytes_reclaimed: %d\n", st.Reclaimed())
	fmt.Fprintf(&b, "live_bytes: %d\n", st.LiveBytes)
	c.w.Bulk([]byte(b.String()))
}

func cmdSelect(c *session, args [][]byte) {
	if !c.argc(args, 2, 4) || !c.nonEmpty(args) || !c.nsArg(args[1]) {
		return
	}
	ns := c.srv.eng.Namespace(string(args[1]))
	if ns == nil {
		c.fail(string(zdb.ErrNamespaceNotFound))
		return
	}
	set := ns.Settings()
	password := ""
	if len(args) >= 3 {
		if len(args[2]) > zdb.MaxPasswordLen {
			c.fail(errPasswordLong)
			return
		}
		password = string(args[2])
	}
	if len(args) == 4 {
		if !strings.EqualFold(password, "SECURE") {
			c.fail(errOnlySecure)
			return
		}
		hash := string(args[3])
		if len(hash) != 40 {
			c.fail(errHashLength)
			return
		}
		// A challenge is good for one SELECT (0-db lets it serve any
		// number): whatever the outcome, it is used up.
		challenge := c.challenge
		c.challenge = ""
		if challenge == "" {
			c.fail(errNoChallenge)
			return
		}
		if set.Password == "" {
			c.enter(ns, "")
			c.w.Simple("OK")
			return
		}
		if !checkPassword(strings.ToLower(hash), secureHash(challenge, set.Password)) {
			c.fail(errAccessDenied)
			return
		}
		c.enterWith(ns, true, false)
		c.w.Simple("OK")
		return
	}
	switch {
	case set.Password == "":
		c.enter(ns, "")
	case password != "":
		if !checkPassword(password, set.Password) {
			c.fail(errAccessDenied)
			return
		}
		c.enter(ns, password)
	case !set.Public:
		c.fail(errProtected)
		return
	default:
		c.enter(ns, "") // public: read-only
	}
	c.w.Simple("OK")
}

// secureHash is sha1hex("<challenge>:<password>").
func secureHash(challenge, password string) string {
	sum := sha1.Sum([]byte(challenge + ":" + password))
	return hex.EncodeToString(sum[:])
}

func cmdAuth(c *session, args [][]byte) {
	if !c.argc(args, 2, 3) {
		return
	}
	admin := c.srv.cfg.AdminPassword
	if len(args) == 3 {
		if !strings.EqualFold(string(args[1]), "SECURE") {
			c.fail(errUnexpectedArgs)
			return
		}
		if strings.EqualFold(string(args[2]), "CHALLENGE") {
			var b [8]byte
			rand.Read(b[:])
			c.challenge = hex.EncodeToString(b[:])
			c.w.Simple(c.challenge)
			return
		}
		challenge := c.challenge
		c.challenge = "" // used up, whatever the outcome
		if challenge == "" {
			c.fail(errNoChallenge)
			return
		}
		if admin == "" {
			c.fail(errAuthDisabled)
			return
		}
		if !checkPassword(strings.ToLower(string(args[2])), secureHash(challenge, admin)) {
			c.fail(errAccessDenied)
			return
		}
		c.admin = true
		c.w.Simple("OK")
		return
	}
	if admin == "" {
		c.fail(errAuthDisabled)
		return
	}
	if !checkPassword(string(args[1]), admin) {
		c.fail(errAccessDenied)
		return
	}
	c.admin = true
	c.w.Simple("OK")
}

func cmdFlush(c *session, args [][]byte) {
	// Extra arguments are ignored, as in 0-db.
	set := c.ns.Settings()
	if set.Public || set.Password == "" || c.ns.Name() == zdb.DefaultNamespace {
		c.fail(errFlushPublic)
		return
	}
	if !c.writable {
		c.fail(errReadOnly)
		return
	}
	if err := c.ns.Flush(); err != nil {
		c.replyErr(err)
		return
	}
	c.w.Simple("OK")
}

func cmdHooks(c *session, args [][]byte) {
	if !c.requireAdmin() { // extra arguments ignored, as in 0-db
		return
	}
	runs := c.srv.eng.Hooks()
	c.w.Array(len(runs))
	for _, r := range runs {
		c.w.Array(6)
		c.w.BulkString(r.Event)
		c.w.Array(len(r.Args))
		for _, a := range r.Args {
			c.w.BulkString(a)
		}
		c.w.Int(int64(r.PID))
		c.w.Int(r.Created)
		c.w.Int(r.Finished)
		c.w.Int(int64(r.Status))
	}
}

func cmdIndex(c *session, args [][]byte) {
	if !c.argc(args, 2, 3) || !c.requireAdmin() {
		return
	}
	if !strings.EqualFold(string(args[1]), "DIRTY") {
		c.fail(errNotSupported)
		return
	}
	reset := false
	if len(args) == 3 {
		if !strings.EqualFold(string(args[2]), "RESET") {
			c.fail(errNotSupported)
			return
		}
		reset = true
	}
	ids := c.ns.DirtyIndexes(reset)
	if reset {
		c.w.Simple("OK")
		return
	}
	c.w.Array(len(ids))
	for _, id := range ids {
		c.w.Int(int64(id))
	}
}

func cmdData(c *session, args [][]byte) {
	if !c.argc(args, 4, 4) || !c.requireAdmin() {
		return
	}
	if !strings.EqualFold(string(args[1]), "RAW") {
		c.fail(errNotSupported)
		return
	}
	id, err1 := strconv.ParseUint(string(args[2]), 10, 32)
	off, err2 := strconv.ParseInt(string(args[3]), 10, 64)
	if err1 != nil || err2 != nil || off < 0 {
		c.fail(string(zdb.ErrInvalidArguments))
		return
	}
	e, err := c.ns.DataRaw(uint32(id), off)
	if err != nil {
		c.replyErr(err)
		return
	}
	if !c.holdPayload(len(e.Payload)) {
		return
	}
	defer c.dropPayload(len(e.Payload))
	c.w.Array(6)
	c.w.Bulk(e.Key)
	c.w.Int(int64(e.Previous))
	c.w.BulkString(fmt.Sprintf("0x%08x", e.CRC))
	c.w.Int(int64(e.Flags))
	c.w.Int(int64(e.Timestamp))
	c.w.Bulk(e.Payload)
}

func cmdReload(c *session, args [][]byte) {
	if !c.argc(args, 2, 2) || !c.nonEmpty(args) || !c.requireAdmin() || !c.nsArg(args[1]) {
		return
	}
	ns := c.srv.eng.Namespace(string(args[1]))
	if ns == nil {
		c.fail(string(zdb.ErrNamespaceNotFound))
		return
	}
	if err := ns.Reload(); err != nil {
		c.replyErr(err)
		return
	}
	c.srv.eng.NamespaceReloaded(ns.Name())
	c.w.Simple("OK")
}

func cmdStop(c *session, args [][]byte) {
	if !c.argc(args, 1, 1) || !c.requireAdmin() {
		return
	}
	c.w.Simple("Stopping")
	c.flush()
	c.quit = true
	if c.srv.cfg.OnStop != nil {
		go c.srv.cfg.OnStop()
	}
}

// ---------------------------------------------------------------------------
// WAIT

func cmdWait(c *session, args [][]byte) {
	if len(args) != 2 && len(args) != 3 {
		c.fail(string(zdb.ErrInvalidArguments))
		return
	}
	// The awaited command is looked up as a request's command name is: by
	// prefix, and an empty name is "*", which matches every command.
	want := lookup(args[1])
	if want == nil {
		c.fail(errUnknownWatch)
		return
	}
	timeout := 5000 * time.Millisecond
	if len(args) == 3 {
		ms, ok := parseWaitTimeout(args[2])
		if !ok {
			c.fail(errInvalidTimeout)
			return
		}
		timeout = time.Duration(ms) * time.Millisecond
	}
	// Flush what is pending before blocking.
	if c.flush() != nil {
		return
	}
	w := c.srv.waiters.add(c, want)
	defer c.srv.waiters.remove(w)
	select {
	case name := <-w.ch:
		c.w.Simple(name)
	case <-time.After(timeout):
		c.fail(errTimeout)
	case <-c.srv.done:
		c.quit = true
	}
}

// parseWaitTimeout reads WAIT's milliseconds as 0-db does: at most 16
// characters, converted by strtoull (leading blanks and sign, then the
// leading digits; a negative value wraps around), within 100..1800000.
func parseWaitTimeout(b []byte) (uint64, bool) {
	if len(b) > 16 {
		return 0, false
	}
	i := 0
	for i < len(b) && (b[i] == ' ' || (b[i] >= '\t' && b[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var n uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0') // 16 digits cannot overflow
	}
	if neg {
		n = -n
	}
	return n, n >= 100 && n <= 30*60*1000
}

type waiter struct {
	sess *session
	cmd  *command
	ch   chan string
}

type waitRegistry struct {
	n  atomic.Int64
	mu sync.Mutex
	ws map[*waiter]struct{}
}

func (r *waitRegistry) active() bool { return r.n.Load() > 0 }

func (r *waitRegistry) add(c *session, cmd *command) *waiter {
	w := &waiter{sess: c, cmd: cmd, ch: make(chan string, 1)}
	r.mu.Lock()
	if r.ws == nil {
		r.ws = map[*waiter]struct{}{}
	}
	r.ws[w] = struct{}{}
	r.mu.Unlock()
	r.n.Add(1)
	return w
}

func (r *waitRegistry) remove(w *waiter) {
	r.mu.Lock()
	delete(r.ws, w)
	r.mu.Unlock()
	r.n.Add(-1)
}

// notify wakes the waiters of other sessions on the same namespace that
// wait for cmd (the same table entry: SETX does not wake WAIT SET) or for
// any command ("*").
func (r *waitRegistry) notify(c *session, cmd *command) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.ws {
		if w.sess == c || w.sess.ns != c.ns || (w.cmd != &commands[0] && w.cmd != cmd) {
			continue
		}
		select {
		case w.ch <- cmd.name:
		default:
		}
	}
}
