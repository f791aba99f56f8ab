package client

import (
	"bufio"
	"context"
	"errors"
	"iter"
	"strconv"
	"strings"
	"time"

	"qss/internal/resp"
)

func (c *Client) cmd(ctx context.Context, args ...[]byte) (resp.Value, error) {
	return c.call(ctx, c.opts.IOTimeout, args)
}

// ok runs a command whose success reply is a simple string such as +OK.
func (c *Client) ok(ctx context.Context, args ...[]byte) error {
	v, err := c.cmd(ctx, args...)
	if err != nil {
		return err
	}
	if v.Kind != resp.KindSimple {
		return unexpectedReply(opName(args), v)
	}
	return nil
}

// integer runs a command that answers an integer, or nil for a missing key
// (ErrNotFound).
func (c *Client) integer(ctx context.Context, args ...[]byte) (int64, error) {
	v, err := c.cmd(ctx, args...)
	if err != nil {
		return 0, err
	}
	switch {
	case v.Kind == resp.KindInteger:
		return v.Int, nil
	case v.Kind == resp.KindBulk && v.Nil:
		return 0, ErrNotFound
	}
	return 0, unexpectedReply(opName(args), v)
}

// bulk runs a command that answers a bulk string; nil is ErrNotFound.
func (c *Client) bulk(ctx context.Context, args ...[]byte) ([]byte, error) {
	v, err := c.cmd(ctx, args...)
	if err != nil {
		return nil, err
	}
	return bulkValue(opName(args), v)
}

func bulkValue(op string, v resp.Value) ([]byte, error) {
	if v.Kind == resp.KindError {
		return nil, &ReplyError{Text: string(v.Str)}
	}
	if v.Kind != resp.KindBulk {
		return nil, unexpectedReply(op, v)
	}
	if v.Nil {
		return nil, ErrNotFound
	}
	if v.Str == nil {
		return []byte{}, nil
	}
	return v.Str, nil
}

var (
	cmdPing    = []byte("PING")
	cmdSet     = []byte("SET")
	cmdGet     = []byte("GET")
	cmdMGet    = []byte("MGET")
	cmdDel     = []byte("DEL")
	cmdExists  = []byte("EXISTS")
	cmdCheck   = []byte("CHECK")
	cmdLength  = []byte("LENGTH")
	cmdKeyTime = []byte("KEYTIME")
	cmdKeyCur  = []byte("KEYCUR")
	cmdScan    = []byte("SCAN")
	cmdRScan   = []byte("RSCAN")
	cmdHistory = []byte("HISTORY")
)

// Ping checks that the server answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.ok(ctx, cmdPing)
}

// Set stores value under key and returns the key the server echoed (in a
// sequential namespace, the 8-byte id; see SetSeq). When the stored value
// is already byte-identical the server writes nothing and answers nil: Set
// then returns the key it was given and changed == false.
func (c *Client) Set(ctx context.Context, key, value []byte) (id []byte, changed bool, err error) {
	return c.set(ctx, cmdSet, key, value)
}

// SetAt is Set with an explicit timestamp for the entry, an admin-only
// form used to replicate entries with their original time.
func (c *Client) SetAt(ctx context.Context, key, value []byte, ts time.Time) (id []byte, changed bool, err error) {
	return c.set(ctx, cmdSet, key, value, strconv.AppendInt(nil, ts.Unix(), 10))
}

func (c *Client) set(ctx context.Context, args ...[]byte) ([]byte, bool, error) {
	v, err := c.cmd(ctx, args...)
	if err != nil {
		return nil, false, err
	}
	return setValue(args[1], v)
}

func setValue(key []byte, v resp.Value) ([]byte, bool, error) {
	switch {
	case v.Kind == resp.KindError:
		return nil, false, &ReplyError{Text: string(v.Str)}
	case v.Kind != resp.KindBulk:
		return nil, false, unexpectedReply("SET", v)
	case v.Nil:
		return key, false, nil
	}
	return v.Str, true, nil
}

// Get returns the value stored under key, or ErrNotFound when the key is
// missing or deleted.
func (c *Client) Get(ctx context.Context, key []byte) ([]byte, error) {
	return c.bulk(ctx, cmdGet, key)
}

// MGet returns the values of keys, in order, with nil for a missing key.
// Batches larger than MaxMGetKeys are split into several pipelined MGETs.
func (c *Client) MGet(ctx context.Context, keys ...[]byte) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	p := c.Pipeline()
	for i := 0; i < len(keys); i += MaxMGetKeys {
		chunk := keys[i:min(i+MaxMGetKeys, len(keys))]
		p.Do(append([][]byte{cmdMGet}, chunk...)...)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(keys))
	for i, v := range replies {
		if v.Kind == resp.KindError {
			return nil, &BatchError{Index: i * MaxMGetKeys, Err: &ReplyError{Text: string(v.Str)}}
		}
		want := min(MaxMGetKeys, len(keys)-i*MaxMGetKeys)
		if v.Kind != resp.KindArray || len(v.Array) != want {
			return nil, unexpectedReply("MGET", v)
		}
		for _, e := range v.Array {
			b, err := bulkValue("MGET", e)
			if err != nil && err != ErrNotFound {
				return nil, err
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// Del deletes key. A key that is missing or already deleted gives
// ErrKeyNotFound (which also matches ErrNotFound).
func (c *Client) Del(ctx context.Context, key []byte) error {
	return c.ok(ctx, cmdDel, key)
}

// Exists reports whether key holds a live value.
func (c *Client) Exists(ctx context.Context, key []byte) (bool, error) {
	n, err := c.integer(ctx, cmdExists, key)
	return n == 1, err
}

// CheckStatus is the result of an integrity check of a stored value.
type CheckStatus int

// The results of CHECK.
const (
	CheckUnreadable CheckStatus = -1 // the data could not be read (for instance an offloaded file)
	CheckCorrupt    CheckStatus = 0  // the CRC of the data does not match the index
	CheckOK         CheckStatus = 1  // the data matches its CRC
)

// String returns "ok", "corrupt" or "unreadable".
func (s CheckStatus) String() string {
	switch s {
	case CheckOK:
		return "ok"
	case CheckCorrupt:
		return "corrupt"
	case CheckUnreadable:
		return "unreadable"
	}
	return "CheckStatus(" + strconv.Itoa(int(s)) + ")"
}

// Check verifies the stored value of key against its CRC. A missing key
// gives ErrNotFound.
func (c *Client) Check(ctx context.Context, key []byte) (CheckStatus, error) {
	n, err := c.integer(ctx, cmdCheck, key)
	return CheckStatus(n), err
}

// Length returns the length of the value stored under key, or ErrNotFound.
func (c *Client) Length(ctx context.Context, key []byte) (int64, error) {
	return c.integer(ctx, cmdLength, key)
}

// KeyTime returns the time of the last write of key (second precision), or
// ErrNotFound.
func (c *Client) KeyTime(ctx context.Context, key []byte) (time.Time, error) {
	n, err := c.integer(ctx, cmdKeyTime, key)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(n, 0), nil
}

// KeyCur returns a scan cursor positioned on key: Scan(ctx, cursor) then
// continues after it. A missing key gives ErrKeyNotFound.
func (c *Client) KeyCur(ctx context.Context, key []byte) ([]byte, error) {
	return c.bulk(ctx, cmdKeyCur, key)
}

// ScanEntry is one key listed by Scan or RScan.
type ScanEntry struct {
	Key       []byte
	Size      int64     // payload length in bytes
	Timestamp time.Time // time of the last write, second precision
}

// Scan lists a batch of live keys in write order. With a nil cursor it
// starts at the first key; otherwise it starts after the key the cursor
// names. It returns the cursor of the batch's last entry, to pass to the
// next call. Past the last key, or on an empty namespace, it returns
// ErrNoMoreData.
func (c *Client) Scan(ctx context.Context, cursor []byte) (next []byte, entries []ScanEntry, err error) {
	return c.scan(ctx, cmdScan, cursor)
}

// RScan is Scan walking backwards, from the most recent key.
func (c *Client) RScan(ctx context.Context, cursor []byte) (next []byte, entries []ScanEntry, err error) {
	return c.scan(ctx, cmdRScan, cursor)
}

func (c *Client) scan(ctx context.Context, cmd, cursor []byte) ([]byte, []ScanEntry, error) {
	args := [][]byte{cmd}
	if cursor != nil {
		args = append(args, cursor)
	}
	v, err := c.cmd(ctx, args...)
	if err != nil {
		return nil, nil, err
	}
	bad := func() ([]byte, []ScanEntry, error) { return nil, nil, unexpectedReply(string(cmd), v) }
	if v.Kind != resp.KindArray || len(v.Array) != 2 ||
		v.Array[0].Kind != resp.KindBulk || v.Array[0].Nil || v.Array[1].Kind != resp.KindArray {
		return bad()
	}
	entries := make([]ScanEntry, len(v.Array[1].Array))
	for i, e := range v.Array[1].Array {
		if e.Kind != resp.KindArray || len(e.Array) != 3 || e.Array[0].Kind != resp.KindBulk ||
			e.Array[1].Kind != resp.KindInteger || e.Array[2].Kind != resp.KindInteger {
			return bad()
		}
		entries[i] = ScanEntry{Key: e.Array[0].Str, Size: e.Array[1].Int, Timestamp: time.Unix(e.Array[2].Int, 0)}
	}
	return v.Array[0].Str, entries, nil
}

// ScanAll iterates over all live keys in write order, scanning batch by
// batch. An error ends the iteration after being yielded.
func (c *Client) ScanAll(ctx context.Context) iter.Seq2[ScanEntry, error] {
	return c.scanAll(ctx, cmdScan)
}

// RScanAll iterates over all live keys from the most recent one backwards.
func (c *Client) RScanAll(ctx context.Context) iter.Seq2[ScanEntry, error] {
	return c.scanAll(ctx, cmdRScan)
}

func (c *Client) scanAll(ctx context.Context, cmd []byte) iter.Seq2[ScanEntry, error] {
	return func(yield func(ScanEntry, error) bool) {
		var cursor []byte
		for {
			next, entries, err := c.scan(ctx, cmd, cursor)
			if errors.Is(err, ErrNoMoreData) {
				return
			}
			if err != nil {
				yield(ScanEntry{}, err)
				return
			}
			for _, e := range entries {
				if !yield(e, nil) {
					return
				}
			}
			cursor = next
		}
	}
}

// HistoryEntry is one version of a key, returned by History.
type HistoryEntry struct {
	// Prev locates the previous version, to pass to History; nil when
	// this is the oldest version.
	Prev      []byte
	Timestamp time.Time
	Value     []byte
}

// History returns a version of key: the current one when ekey is nil, else
// the one ekey (a Prev from an earlier call) locates. Errors include
// ErrKeyNotFound and ErrNoMoreHistory.
func (c *Client) History(ctx context.Context, key, ekey []byte) (HistoryEntry, error) {
	args := [][]byte{cmdHistory, key}
	if ekey != nil {
		args = append(args, ekey)
	}
	v, err := c.cmd(ctx, args...)
	if err != nil {
		return HistoryEntry{}, err
	}
	if v.Kind != resp.KindArray || len(v.Array) != 3 || v.Array[0].Kind != resp.KindBulk ||
		v.Array[1].Kind != resp.KindBulk || v.Array[2].Kind != resp.KindBulk {
		return HistoryEntry{}, unexpectedReply("HISTORY", v)
	}
	ts, err := strconv.ParseInt(string(v.Array[1].Str), 10, 64)
	if err != nil {
		return HistoryEntry{}, unexpectedReply("HISTORY", v)
	}
	h := HistoryEntry{Timestamp: time.Unix(ts, 0), Value: v.Array[2].Str}
	if !v.Array[0].Nil {
		h.Prev = v.Array[0].Str
	}
	if h.Value == nil {
		h.Value = []byte{}
	}
	return h, nil
}

// DBSize returns the number of live keys in the namespace.
func (c *Client) DBSize(ctx context.Context) (int64, error) {
	return c.integer(ctx, []byte("DBSIZE"))
}

// Info returns the server's INFO report as a map of its "key: value" lines
// (server_name, uptime, sequential_key_size, commands_executed, …).
func (c *Client) Info(ctx context.Context) (map[string]string, error) {
	b, err := c.bulk(ctx, []byte("INFO"))
	if err != nil {
		return nil, err
	}
	return ParseInfo(b), nil
}

// ParseInfo parses the text of INFO or NSINFO: one "key: value" pair a line,
// with section headers ("# name") and blank lines skipped.
func ParseInfo(text []byte) map[string]string {
	m := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(string(text)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

// Time returns the server's clock.
func (c *Client) Time(ctx context.Context) (time.Time, error) {
	v, err := c.cmd(ctx, []byte("TIME"))
	if err != nil {
		return time.Time{}, err
	}
	if v.Kind != resp.KindArray || len(v.Array) != 2 {
		return time.Time{}, unexpectedReply("TIME", v)
	}
	sec, err1 := strconv.ParseInt(string(v.Array[0].Str), 10, 64)
	usec, err2 := strconv.ParseInt(string(v.Array[1].Str), 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, unexpectedReply("TIME", v)
	}
	return time.Unix(sec, usec*1000), nil
}

// NSNew creates a namespace (admin). An existing name gives
// ErrNamespaceExists.
func (c *Client) NSNew(ctx context.Context, name string) error {
	return c.ok(ctx, []byte("NSNEW"), []byte(name))
}

// NSDel deletes a namespace and its data (admin). Clients using it are
// disconnected; the client's own namespace cannot be deleted
// (ErrNamespaceInUse).
func (c *Client) NSDel(ctx context.Context, name string) error {
	return c.ok(ctx, []byte("NSDEL"), []byte(name))
}

// NSList returns the names of all namespaces, "default" first.
func (c *Client) NSList(ctx context.Context) ([]string, error) {
	v, err := c.cmd(ctx, []byte("NSLIST"))
	if err != nil {
		return nil, err
	}
	if v.Kind != resp.KindArray {
		return nil, unexpectedReply("NSLIST", v)
	}
	names := make([]string, len(v.Array))
	for i, e := range v.Array {
		if e.Kind != resp.KindBulk && e.Kind != resp.KindSimple {
			return nil, unexpectedReply("NSLIST", v)
		}
		names[i] = string(e.Str)
	}
	return names, nil
}

// NSInfo returns the description of a namespace as a map of its
// "key: value" lines (name, entries, public, password, data_size_bytes,
// data_limits_bytes, mode, …). A missing namespace gives
// ErrNamespaceNotFound.
func (c *Client) NSInfo(ctx context.Context, name string) (map[string]string, error) {
	b, err := c.bulk(ctx, []byte("NSINFO"), []byte(name))
	if err != nil {
		return nil, err
	}
	return ParseInfo(b), nil
}

// NSSet sets a property of a namespace (admin): "maxsize" (bytes, 0 for no
// limit), "password" ("*" clears it), "public" ("0"/"1"), "worm"
// ("0"/"1"), "mode" ("user"/"seq", only while empty), "lock" and "freeze"
// ("0"/"1").
func (c *Client) NSSet(ctx context.Context, name, property, value string) error {
	return c.ok(ctx, []byte("NSSET"), []byte(name), []byte(property), []byte(value))
}

// NSJump makes the server close the namespace's current index and data
// files and start new ones (admin).
func (c *Client) NSJump(ctx context.Context) error {
	return c.ok(ctx, []byte("NSJUMP"))
}

// Compact reclaims the space of overwritten and deleted entries of the
// selected namespace (admin; ours, not 0-db's) and returns what it did, as
// COMPACT's "key: value" lines (files_retired, bytes_reclaimed, …). It
// returns once the compaction is done, which may take long: ctx bounds it.
func (c *Client) Compact(ctx context.Context) (map[string]string, error) {
	// No I/O deadline: the server answers when the work is done.
	v, err := c.call(ctx, 0, [][]byte{[]byte("COMPACT")})
	if err != nil {
		return nil, err
	}
	b, err := bulkValue("COMPACT", v)
	if err != nil {
		return nil, err
	}
	return ParseInfo(b), nil
}

// Reload makes the server reload a namespace from disk (admin).
func (c *Client) Reload(ctx context.Context, name string) error {
	return c.ok(ctx, []byte("RELOAD"), []byte(name))
}

// Flush deletes every key of the namespace. The server allows it only on a
// private namespace selected with its password (else ErrFlushDenied).
func (c *Client) Flush(ctx context.Context) error {
	return c.ok(ctx, []byte("FLUSH"))
}

// IndexDirty returns the ids of the index files changed since the last
// IndexDirtyReset (admin).
func (c *Client) IndexDirty(ctx context.Context) ([]uint32, error) {
	v, err := c.cmd(ctx, []byte("INDEX"), []byte("DIRTY"))
	if err != nil {
		return nil, err
	}
	if v.Kind != resp.KindArray {
		return nil, unexpectedReply("INDEX DIRTY", v)
	}
	ids := make([]uint32, len(v.Array))
	for i, e := range v.Array {
		if e.Kind != resp.KindInteger || e.Int < 0 || e.Int > 1<<32-1 {
			return nil, unexpectedReply("INDEX DIRTY", v)
		}
		ids[i] = uint32(e.Int)
	}
	return ids, nil
}

// IndexDirtyReset clears the set of changed index files (admin).
func (c *Client) IndexDirtyReset(ctx context.Context) error {
	return c.ok(ctx, []byte("INDEX"), []byte("DIRTY"), []byte("RESET"))
}

// RawEntry is an entry of a data file as returned by DataRaw.
type RawEntry struct {
	Key        []byte
	PrevOffset uint32 // offset of the previous entry in the data file
	CRC        uint32 // CRC32-C of the payload as stored
	Flags      uint8  // 1: tombstone (deletion), 2: truncated
	Timestamp  time.Time
	Payload    []byte
}

// DataRaw reads the data-file entry at offset of data file fileid of the
// namespace (admin). The first entry of a file is at offset 28; past the
// end the server answers ErrEOF.
func (c *Client) DataRaw(ctx context.Context, fileid, offset uint32) (RawEntry, error) {
	v, err := c.cmd(ctx, []byte("DATA"), []byte("RAW"),
		strconv.AppendUint(nil, uint64(fileid), 10), strconv.AppendUint(nil, uint64(offset), 10))
	if err != nil {
		return RawEntry{}, err
	}
	a := v.Array
	if v.Kind != resp.KindArray || len(a) != 6 || a[0].Kind != resp.KindBulk ||
		a[1].Kind != resp.KindInteger || a[2].Kind != resp.KindBulk || a[3].Kind != resp.KindInteger ||
		a[4].Kind != resp.KindInteger || a[5].Kind != resp.KindBulk {
		return RawEntry{}, unexpectedReply("DATA RAW", v)
	}
	crc, err := strconv.ParseUint(strings.TrimPrefix(string(a[2].Str), "0x"), 16, 32)
	if err != nil {
		return RawEntry{}, unexpectedReply("DATA RAW", v)
	}
	e := RawEntry{
		Key:        a[0].Str,
		PrevOffset: uint32(a[1].Int),
		CRC:        uint32(crc),
		Flags:      uint8(a[3].Int),
		Timestamp:  time.Unix(a[4].Int, 0),
		Payload:    a[5].Str,
	}
	if e.Payload == nil {
		e.Payload = []byte{}
	}
	return e, nil
}

// Wait blocks until another client of the same namespace runs command cmd
// ("*" for any command) and returns that command's name, or fails with
// ErrTimeout after timeout (the server accepts 100 ms to 30 min; zero means
// its default of 5 s).
func (c *Client) Wait(ctx context.Context, cmd string, timeout time.Duration) (string, error) {
	args := [][]byte{[]byte("WAIT"), []byte(cmd)}
	wait := 5 * time.Second
	if timeout > 0 {
		wait = timeout
		args = append(args, strconv.AppendInt(nil, timeout.Milliseconds(), 10))
	}
	io := c.opts.IOTimeout
	if io > 0 {
		io += wait
	}
	v, err := c.call(ctx, io, args)
	if err != nil {
		return "", err
	}
	if v.Kind != resp.KindSimple {
		return "", unexpectedReply("WAIT", v)
	}
	return string(v.Str), nil
}
