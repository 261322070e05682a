package lookup

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// grpcCodes maps domain error codes to gRPC status codes: the one table of
// this edge. A code missing from it is Internal.
var grpcCodes = map[tenant.Code]codes.Code{
	tenant.Invalid:         codes.InvalidArgument,
	tenant.NotFound:        codes.NotFound,
	tenant.AlreadyExists:   codes.AlreadyExists,
	tenant.HostnameTaken:   codes.AlreadyExists,
	tenant.VersionMismatch: codes.FailedPrecondition,
	tenant.MoveConflict:    codes.FailedPrecondition,
	tenant.Unavailable:     codes.Unavailable,
	tenant.Internal:        codes.Internal,
}

// status converts err to the status a caller sees. The caller's own context
// ending passes through as CANCELED or DEADLINE_EXCEEDED; a cap or limit
// is RESOURCE_EXHAUSTED with its text; a region behind a min_version is
// UNAVAILABLE with an ErrorInfo detail (see atleast.go); a domain error keeps its
// caller-safe text (fields included); anything else is logged in full (at
// most once per failureLogEvery, with a count) and shown as "internal
// error".
func (s *Server) status(err error) *status.Status {
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	}
	var shed *shedError
	if errors.As(err, &shed) {
		return status.New(codes.ResourceExhausted, shed.Error())
	}
	var be *behindError
	if errors.As(err, &be) {
		return be.status()
	}
	var de *tenant.Error
	if !errors.As(err, &de) {
		s.errLog.log(s.log, slog.LevelError, "lookup failed", "err", err)
		return status.New(codes.Internal, "internal error")
	}
	code, ok := grpcCodes[de.Code]
	if !ok || code == codes.Internal {
		s.errLog.log(s.log, slog.LevelError, "lookup failed", "err", err)
		return status.New(codes.Internal, "internal error")
	}
	return status.New(code, de.Error())
}
