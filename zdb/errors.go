package zdb

import "errors"

// Error is an engine error whose text is exactly the error reply 0-db sends
// for it (without the leading '-'), so the RESP front can pass it on as is.
type Error string

func (e Error) Error() string { return string(e) }

// The engine's errors, with 0-db v2's reply texts.
const (
	ErrNotFound          Error = "Key not found"
	ErrKeyTooLarge       Error = "Key too large"
	ErrInvalidKey        Error = "Invalid key"
	ErrKeyNeeded         Error = "Invalid argument, key needed"
	ErrOnlyUpdate        Error = "Invalid key, only update authorized"
	ErrFrozen            Error = "Namespace is temporarily frozen (read-write disabled)"
	ErrLocked            Error = "Namespace is temporarily locked (read-only)"
	ErrWorm              Error = "Namespace is protected by worm mode"
	ErrWormDelete        Error = "Cannot delete a key when namespace is in worm mode"
	ErrNoSpace           Error = "No space left on this namespace"
	ErrWrite             Error = "Cannot write data/index right now"
	ErrInternal          Error = "Internal Error"
	ErrNoMoreData        Error = "No more data"
	ErrInvalidCursor     Error = "Invalid key format"
	ErrNoMoreHistory     Error = "No more history"
	ErrInvalidArguments  Error = "Invalid arguments"
	ErrEOF               Error = "EOF"
	ErrNamespaceExists   Error = "This namespace is not available"
	ErrNameNotAllowed    Error = "This name is not allowed"
	ErrNameTooLong       Error = "Namespace too long"
	ErrNamespaceNotFound Error = "Namespace not found"
	ErrNoSuchNamespace   Error = "This namespace doesn't exists"
	ErrDeleteDefault     Error = "Cannot remove default namespace"
	ErrUpdateDefault     Error = "Cannot update default namespace"
	ErrInvalidProperty   Error = "Invalid property"
	ErrModeUsed          Error = "Cannot change mode of used namespace"
	ErrSingleMode        Error = "This server instance is configured to use a single runtime mode"
	ErrInvalidMode       Error = "Invalid property value (expected: user, seq)"
	ErrInvalidValue      Error = "Invalid value"
	ErrNamespaceGone     Error = "Your active namespace is not available anymore (probably removed)."
)

// codeError is an engine error that keeps its cause: errors.Is and
// errors.As find both the code (an Error, whose text is the 0-db reply)
// and the cause (the OS error behind it, such as syscall.ENOSPC or
// fs.ErrNotExist). A RESP front sends the code's text, never Error().
type codeError struct {
	code  Error
	cause error
}

func (e *codeError) Error() string   { return string(e.code) + ": " + e.cause.Error() }
func (e *codeError) Unwrap() []error { return []error{e.code, e.cause} }

// withCause returns code wrapping cause, or code alone when cause is nil
// or already carries code.
func withCause(code Error, cause error) error {
	if cause == nil {
		return code
	}
	if errors.Is(cause, code) {
		return cause
	}
	return &codeError{code: code, cause: cause}
}
