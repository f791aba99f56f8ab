package client

import (
	"errors"
	"strings"
)

// ReplyError is an error reply sent by the server. Text is the reply without
// its leading '-'; 0-db error replies carry no "ERR " prefix.
//
// The package's sentinel errors (ErrKeyNotFound, ErrReadOnly, …) are
// *ReplyError values: a reply matches a sentinel under errors.Is when their
// texts are equal, so
//
//	errors.Is(err, client.ErrReadOnly)
//
// holds for any *ReplyError whose Text is "Namespace is in read-only mode",
// however it was wrapped.
type ReplyError struct {
	Text string

	// also lists further texts that match this error under errors.Is; it
	// lets one sentinel stand for a family of replies (ErrWorm).
	also []string
}

// Error returns the reply text.
func (e *ReplyError) Error() string { return "zdb: " + e.Text }

// Is reports whether target is a *ReplyError with the same text (or one of
// the texts a sentinel stands for). A "Key not found" reply also matches
// ErrNotFound.
func (e *ReplyError) Is(target error) bool {
	if target == ErrNotFound {
		return e.Text == ErrKeyNotFound.Text
	}
	t, ok := target.(*ReplyError)
	if !ok {
		return false
	}
	if t.Text == e.Text {
		return true
	}
	for _, s := range t.also {
		if s == e.Text {
			return true
		}
	}
	return false
}

// fatalReply reports whether the server closes the connection after sending
// this error reply, so the connection must not be reused.
func fatalReply(text string) bool {
	switch text {
	case ErrPayloadTooBig.Text, ErrMalformedRequest.Text, ErrMalformedQuery.Text,
		ErrNamespaceGone.Text:
		return true
	}
	return false
}

func replyErr(text string) *ReplyError { return &ReplyError{Text: text} }

// ErrNotFound is returned when the server answers nil ($-1) for a key that
// does not exist or was deleted (GET, LENGTH, KEYTIME, CHECK). A "Key not
// found" error reply (DEL, KEYCUR, HISTORY) matches it too under errors.Is,
// so callers can test for a missing key with one comparison.
var ErrNotFound = errors.New("zdb: key not found")

// ErrClosed is returned by methods of a Client after Close.
var ErrClosed = errors.New("zdb: client is closed")

// ErrUnexpectedReply is wrapped by errors reporting a reply whose type or
// shape does not fit the command, which means the server does not speak the
// 0-db protocol as this package expects.
var ErrUnexpectedReply = errors.New("zdb: unexpected reply")

// Error replies of 0-db v2, with their exact texts.
var (
	// Key commands.
	ErrKeyNotFound      = replyErr("Key not found")
	ErrKeyTooLarge      = replyErr("Key too large")
	ErrInvalidKey       = replyErr("Invalid key")
	ErrKeyNeeded        = replyErr("Invalid argument, key needed")
	ErrOnlyUpdate       = replyErr("Invalid key, only update authorized")
	ErrInvalidCursor    = replyErr("Invalid key format")
	ErrNoMoreData       = replyErr("No more data")
	ErrNoMoreHistory    = replyErr("No more history")
	ErrWriteFailed      = replyErr("Cannot write data/index right now")
	ErrInternal         = replyErr("Internal Error")
	ErrEOF              = replyErr("EOF")
	ErrFlushDenied      = replyErr("Flushing public namespace denied")
	ErrTimeout          = replyErr("Timeout")
	ErrInvalidTimeout   = replyErr("Invalid timeout")
	ErrPayloadTooBig    = replyErr("Payload too big")
	ErrInvalidArgument  = replyErr("Invalid argument")
	ErrInvalidArguments = replyErr("Invalid arguments")
	ErrUnexpectedArgs   = replyErr("Unexpected arguments")

	// Namespace state.
	ErrReadOnly = replyErr("Namespace is in read-only mode")
	ErrFrozen   = replyErr("Namespace is temporarily frozen (read-write disabled)")
	ErrLocked   = replyErr("Namespace is temporarily locked (read-only)")
	ErrNoSpace  = replyErr("No space left on this namespace")
	// ErrWorm matches both worm-mode refusals: an overwrite ("Namespace is
	// protected by worm mode") and a delete (ErrWormDelete).
	ErrWorm = &ReplyError{
		Text: "Namespace is protected by worm mode",
		also: []string{"Cannot delete a key when namespace is in worm mode"},
	}
	ErrWormDelete    = replyErr("Cannot delete a key when namespace is in worm mode")
	ErrNamespaceGone = replyErr("Your active namespace is not available anymore (probably removed).")

	// Authentication and namespace selection.
	ErrPermissionDenied = replyErr("Permission denied")
	ErrAccessDenied     = replyErr("Access denied")
	ErrProtectedPrivate = replyErr("Namespace protected and private")
	ErrAuthDisabled     = replyErr("Authentication disabled")
	ErrNoChallenge      = replyErr("No CHALLENGE requested, secure authentication not available")
	ErrPasswordTooLong  = replyErr("Password too long")
	ErrOnlySecure       = replyErr("Only SECURE extra method supported")
	ErrInvalidHashLen   = replyErr("Invalid hash length")
	// ErrNamespaceNotFound matches both "Namespace not found" (SELECT,
	// NSINFO, NSSET) and NSDEL's "This namespace doesn't exists".
	ErrNamespaceNotFound = &ReplyError{
		Text: "Namespace not found",
		also: []string{"This namespace doesn't exists"},
	}

	// Namespace administration.
	ErrNamespaceExists  = replyErr("This namespace is not available")
	ErrNameNotAllowed   = replyErr("This name is not allowed")
	ErrNamespaceTooLong = replyErr("Namespace too long")
	ErrDeleteDefault    = replyErr("Cannot remove default namespace")
	ErrNamespaceInUse   = replyErr("Cannot remove namespace you're currently using.")
	ErrUpdateDefault    = replyErr("Cannot update default namespace")
	ErrInvalidProperty  = replyErr("Invalid property")
	ErrInvalidMode      = replyErr("Invalid property value (expected: user, seq)")
	ErrModeUsed         = replyErr("Cannot change mode of used namespace")
	ErrSingleMode       = replyErr("This server instance is configured to use a single runtime mode")

	// Protocol.
	ErrCommandNotSupported = replyErr("Command not supported")
	ErrInvalidCommand      = replyErr("This is not a valid command")
	ErrMissingArguments    = replyErr("Missing arguments")
	ErrTooManyArguments    = replyErr("Too many arguments")
	ErrMalformedRequest    = replyErr("Malformed request, array expected")
	ErrMalformedQuery      = replyErr("Malformed query string")
)

// OpError reports a failure to carry out a command: a network error, a
// cancelled or expired context, a closed client, or an error reply during
// connection setup (AUTH, SELECT). Op is the command name and Addr the
// server address; command arguments, and so passwords, are never included.
type OpError struct {
	Op   string // command name, such as "GET"; "SET+pipeline" for a pipeline starting with SET
	Addr string // server address as given in Options.Addr
	Err  error  // the cause
}

// Error returns "zdb <Op> <Addr>: <cause>".
func (e *OpError) Error() string {
	return "zdb " + e.Op + " " + e.Addr + ": " + strings.TrimPrefix(e.Err.Error(), "zdb: ")
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// BatchError reports the first command of a batch (SetMany, GetMany) that
// failed with an error reply. Index is its position in the batch.
type BatchError struct {
	Index int
	Err   error
}

// Error describes the failed command and its error.
func (e *BatchError) Error() string {
	return "zdb: batch command " + itoa(e.Index) + ": " + strings.TrimPrefix(e.Err.Error(), "zdb: ")
}

// Unwrap returns the error of the failed command.
func (e *BatchError) Unwrap() error { return e.Err }
