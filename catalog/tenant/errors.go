package tenant

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Code classifies a domain error. Each edge (HTTP, gRPC, CLI) maps codes to
// its own statuses in one table.
type Code string

// Error codes.
const (
	// Invalid: the input breaks a tenant rule (bad id, hostname, bounds).
	Invalid Code = "invalid"
	// NotFound: no such tenant or hostname.
	NotFound Code = "not_found"
	// AlreadyExists: a tenant with that id exists.
	AlreadyExists Code = "already_exists"
	// HostnameTaken: a hostname is owned by another tenant.
	HostnameTaken Code = "hostname_taken"
	// VersionMismatch: the expected version is not the stored one.
	VersionMismatch Code = "version_mismatch"
	// MoveConflict: the write conflicts with the tenant's move (tcsctl
	// move): a step out of order, or a change of the database pointer,
	// a delete, while a move is in progress.
	MoveConflict Code = "move_conflict"
	// Unavailable: a backend could not be reached; the call may be retried.
	Unavailable Code = "unavailable"
	// Internal: anything else. Its details are logged, never shown.
	Internal Code = "internal"
)

// FieldError names one field of the input and why it was rejected. Field is a
// JSON path such as "hostnames[1]" or "database.port".
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (f FieldError) String() string { return f.Field + ": " + f.Reason }

// Error is a domain error: a code, a message safe to show to the caller, and,
// for Invalid, the fields at fault.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.String()
	}
	if e.Message == "" {
		return strings.Join(parts, "; ")
	}
	return e.Message + ": " + strings.Join(parts, "; ")
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrors returns an Invalid error naming the fields at fault, or nil if
// fields is empty.
func FieldErrors(fields []FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	return &Error{Code: Invalid, Message: "invalid tenant", Fields: fields}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// Internal otherwise. A nil error has no code.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// ErrorMessage returns the caller-safe message of err: the message of an
// *Error, or "internal error" for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorFields returns the fields at fault in err, if any.
func ErrorFields(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// Passes reports whether the stores return err to their callers as it is:
// a domain *Error, or the error of a context that ended.
func Passes(err error) bool {
	var domain *Error
	return errors.As(err, &domain) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// WrapOp is the stores' error wrapping: nil stays nil, an error that Passes
// is returned as it is, and anything else is prefixed with op.
func WrapOp(err error, op string) error {
	if err == nil || Passes(err) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
