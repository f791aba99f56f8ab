package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"qss/zstor"
	"qss/zstor/pipeline"
)

// ProtocolVersion is the version of the socket protocol (docs/zstor-daemon.md,
// "Protocol"). Every request and response carries it; the daemon refuses a
// request of a version it does not speak with an error of kind KindVersion,
// so a CLI and a daemon of different builds fail with one clear line
// instead of misreading each other.
//
// Version 2 added protect, links and progress to requests, progress lines
// before the response, and the jobs op. The daemon still serves version 1
// requests (answering in version 1; none of them carries the new fields),
// but a version 2 client is refused by a version 1 daemon: an old daemon
// would ignore protect and replace a changed local file.
const ProtocolVersion = 2

// minProtocolVersion is the oldest request version the daemon serves.
const minProtocolVersion = 1

// Limits of one message. A request is small (an op and a path); a response
// can be a long listing.
const (
	maxRequestBytes  = 1 << 20
	maxResponseBytes = 256 << 20
)

// Operations.
const (
	opPing     = "ping"
	opStore    = "store"
	opQueue    = "queue"
	opRetrieve = "retrieve"
	opCheck    = "check"
	opDelete   = "delete"
	opList     = "list"
	opRebuild  = "rebuild"
	opScrub    = "scrub"
	opRepair   = "repair"
	opKeyFor   = "keyfor"
	opJobs     = "jobs"
)

// request is the one JSON line a client sends.
type request struct {
	V           int    `json:"v"`
	Op          string `json:"op"`
	Path        string `json:"path,omitempty"`   // absolute: store, queue, retrieve, keyfor
	Key         string `json:"key,omitempty"`    // object key: check, delete, rebuild; override for store, queue, retrieve
	Prefix      string `json:"prefix,omitempty"` // list, repair
	DeleteLocal bool   `json:"delete_local,omitempty"`
	Protect     bool   `json:"protect,omitempty"`  // v2, retrieve: refuse to replace a changed local file
	Links       bool   `json:"links,omitempty"`    // v2, store: store a symbolic link as a link
	Progress    bool   `json:"progress,omitempty"` // v2, store and retrieve: send progress lines
}

// progressLine is what the daemon sends, any number of times, before the
// response of a request that asked for progress: the bytes done so far and
// the total (-1 while unknown).
type progressLine struct {
	V        int          `json:"v"`
	Progress progressInfo `json:"progress"`
}

type progressInfo struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// response is the one JSON line the daemon answers with: exactly one of
// Error and Result is set (Result may be null for ops without one).
type response struct {
	V      int        `json:"v"`
	OK     bool       `json:"ok"`
	Error  *wireError `json:"error,omitempty"`
	Result any        `json:"result,omitempty"`
}

// wireError is an error as it crosses the socket: a kind the client can
// match and the daemon's one-line message.
type wireError struct {
	Kind string `json:"kind"`
	Msg  string `json:"msg"`
}

// Error kinds. A client maps them back to the sentinels of package zstor
// (RemoteError.Is), so errors.Is(err, zstor.ErrNotStored) holds across the
// socket as it does in-process.
const (
	KindNotStored    = "not_stored"     // zstor.ErrNotStored
	KindNotUnderRoot = "not_under_root" // zstor.ErrNotUnderRoot
	KindLocalChanged = "local_changed"  // zstor.ErrLocalChanged (v2)
	KindChanged      = "changed"        // zstor.ErrChanged (v2)
	KindNoFile       = "no_file"        // fs.ErrNotExist: a local file is missing
	KindBadRequest   = "bad_request"    // malformed request, unknown op, relative path
	KindVersion      = "version"        // protocol version mismatch
	KindCanceled     = "canceled"       // the operation was cancelled (client gone, daemon stopping)
	KindFailed       = "failed"         // anything else
)

// RemoteError is an error reported by the daemon. Error returns the
// daemon's message unchanged; Is maps the kind to the sentinel it stands
// for.
type RemoteError struct {
	Kind string
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// Is reports whether the remote error stands for target.
func (e *RemoteError) Is(target error) bool {
	switch e.Kind {
	case KindNotStored:
		return target == zstor.ErrNotStored
	case KindNotUnderRoot:
		return target == zstor.ErrNotUnderRoot
	case KindLocalChanged:
		return target == zstor.ErrLocalChanged
	case KindChanged:
		return target == zstor.ErrChanged
	case KindNoFile:
		return target == fs.ErrNotExist
	case KindCanceled:
		return target == context.Canceled
	}
	return false
}

// toWire classifies an error for the socket.
func toWire(err error) *wireError {
	kind := KindFailed
	var re *RemoteError
	var bad badRequest
	switch {
	case errors.As(err, &bad):
		kind = KindBadRequest
	case errors.As(err, &re):
		kind = re.Kind
	case errors.Is(err, zstor.ErrNotStored):
		kind = KindNotStored
	case errors.Is(err, zstor.ErrNotUnderRoot):
		kind = KindNotUnderRoot
	case errors.Is(err, zstor.ErrLocalChanged):
		kind = KindLocalChanged
	case errors.Is(err, zstor.ErrChanged):
		kind = KindChanged
	case errors.Is(err, fs.ErrNotExist):
		kind = KindNoFile
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		kind = KindCanceled
	}
	return &wireError{Kind: kind, Msg: err.Error()}
}

// badRequest is a request the daemon cannot act on as sent.
type badRequest string

func (b badRequest) Error() string { return "zstor daemon: bad request: " + string(b) }

// Results on the wire. Checksums are 64 hex digits, times RFC 3339.

type pingResult struct {
	Version int    `json:"version"`
	PID     int    `json:"pid"`
	Config  string `json:"config"`
}

type storeResult struct {
	Key      string `json:"key"`
	Size     int64  `json:"size"`
	Checksum string `json:"checksum"`
	Chunks   int    `json:"chunks"`
	Skipped  bool   `json:"skipped,omitempty"`
	Replaced bool   `json:"replaced,omitempty"`
	// MinShards is the fewest shards written for a chunk (below n: the
	// object was stored degraded). Absent from older daemons' replies.
	MinShards int `json:"min_shards,omitempty"`
}

type retrieveResult struct {
	Key       string `json:"key"`
	Size      int64  `json:"size"`
	Checksum  string `json:"checksum"`
	BadShards int    `json:"bad_shards"`
	Unchanged bool   `json:"unchanged,omitempty"`
	Link      string `json:"link,omitempty"`
}

// Job is one queued store as the jobs op reports it.
type Job struct {
	Path        string    `json:"path"`
	Key         string    `json:"key,omitempty"`
	DeleteLocal bool      `json:"delete_local,omitempty"`
	Queued      time.Time `json:"queued"`
	Attempts    int       `json:"attempts"`
	Next        time.Time `json:"next"`
	LastErr     string    `json:"last_err,omitempty"`
}

type jobsResult struct {
	Jobs []Job `json:"jobs"`
}

type checkResult struct {
	Checksum string `json:"checksum"`
}

type deleteResult struct {
	Leaked int `json:"leaked"`
}

type entry struct {
	Key       string    `json:"key"`
	Size      int64     `json:"size"`
	Stored    time.Time `json:"stored"`
	Checksum  string    `json:"checksum"`
	Chunks    int       `json:"chunks"`
	K         int       `json:"k"`
	N         int       `json:"n"`
	MinShards int       `json:"min_shards"`
}

type listResult struct {
	Entries       []entry `json:"entries"`
	Undecryptable int     `json:"undecryptable"`
}

type rebuildResult struct {
	Key     string `json:"key"`
	Rebuilt int    `json:"rebuilt"`
	Chunks  int    `json:"chunks"`
}

type shardProblem struct {
	Key     string `json:"key"`
	Chunk   uint64 `json:"chunk"`
	Shard   int    `json:"shard"`
	Backend string `json:"backend"`
	Err     string `json:"err"`
}

type scrubResult struct {
	Objects  int            `json:"objects"`
	Shards   int            `json:"shards"`
	Problems []shardProblem `json:"problems"`
	Errors   []string       `json:"errors"`
}

type repairResult struct {
	Objects  int             `json:"objects"`
	Repaired []rebuildResult `json:"repaired"`
	Errors   []string        `json:"errors"`
}

type keyForResult struct {
	Key string `json:"key"`
}

// Conversions between zstor's types and the wire's.

func hexSum(c pipeline.Checksum) string { return hex.EncodeToString(c[:]) }

func parseSum(s string) (pipeline.Checksum, error) {
	var c pipeline.Checksum
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(c) {
		return c, fmt.Errorf("zstor daemon: bad checksum %q in the answer", s)
	}
	copy(c[:], b)
	return c, nil
}

func fromStore(r *zstor.StoreResult) storeResult {
	return storeResult{Key: r.Key, Size: r.Size, Checksum: hexSum(r.Checksum), Chunks: r.Chunks, Skipped: r.Skipped, Replaced: r.Replaced, MinShards: r.MinShards}
}

func (r storeResult) toZstor() (*zstor.StoreResult, error) {
	sum, err := parseSum(r.Checksum)
	return &zstor.StoreResult{Key: r.Key, Size: r.Size, Checksum: sum, Chunks: r.Chunks, Skipped: r.Skipped, Replaced: r.Replaced, MinShards: r.MinShards}, err
}

func fromRetrieve(r *zstor.RetrieveResult) retrieveResult {
	return retrieveResult{Key: r.Key, Size: r.Size, Checksum: hexSum(r.Checksum), BadShards: r.BadShards, Unchanged: r.Unchanged, Link: r.Link}
}

func (r retrieveResult) toZstor() (*zstor.RetrieveResult, error) {
	sum, err := parseSum(r.Checksum)
	return &zstor.RetrieveResult{Key: r.Key, Size: r.Size, Checksum: sum, BadShards: r.BadShards, Unchanged: r.Unchanged, Link: r.Link}, err
}

func fromEntries(es []zstor.Entry) []entry {
	out := make([]entry, len(es))
	for i, e := range es {
		out[i] = entry{Key: e.Key, Size: e.Size, Stored: e.Stored, Checksum: hexSum(e.Checksum), Chunks: e.Chunks, K: e.K, N: e.N, MinShards: e.MinShards}
	}
	return out
}

func toEntries(es []entry) ([]zstor.Entry, error) {
	out := make([]zstor.Entry, len(es))
	for i, e := range es {
		sum, err := parseSum(e.Checksum)
		if err != nil {
			return nil, err
		}
		out[i] = zstor.Entry{Key: e.Key, Size: e.Size, Stored: e.Stored, Checksum: sum, Chunks: e.Chunks, K: e.K, N: e.N, MinShards: e.MinShards}
	}
	return out, nil
}

func fromRebuild(r zstor.RebuildResult) rebuildResult {
	return rebuildResult{Key: r.Key, Rebuilt: r.Rebuilt, Chunks: r.Chunks}
}

func (r rebuildResult) toZstor() zstor.RebuildResult {
	return zstor.RebuildResult{Key: r.Key, Rebuilt: r.Rebuilt, Chunks: r.Chunks}
}

func fromScrub(r *zstor.ScrubReport) scrubResult {
	out := scrubResult{Objects: r.Objects, Shards: r.Shards, Errors: r.Errors}
	for _, p := range r.Problems {
		out.Problems = append(out.Problems, shardProblem(p))
	}
	return out
}

func (r scrubResult) toZstor() *zstor.ScrubReport {
	out := &zstor.ScrubReport{Objects: r.Objects, Shards: r.Shards, Errors: r.Errors}
	for _, p := range r.Problems {
		out.Problems = append(out.Problems, zstor.ShardProblem(p))
	}
	return out
}

func fromRepair(r *zstor.RepairReport) repairResult {
	out := repairResult{Objects: r.Objects, Errors: r.Errors}
	for _, x := range r.Repaired {
		out.Repaired = append(out.Repaired, fromRebuild(x))
	}
	return out
}

func (r repairResult) toZstor() *zstor.RepairReport {
	out := &zstor.RepairReport{Objects: r.Objects, Errors: r.Errors}
	for _, x := range r.Repaired {
		out.Repaired = append(out.Repaired, x.toZstor())
	}
	return out
}
