package worktest

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Validator returns a func that asks the WorkService on conn whether token
// is tenant id's current token in pool, failing t if the call fails.
func Validator(t testing.TB, conn grpc.ClientConnInterface, pool string) func(id string, token uint64) *tcsv1.ValidateResponse {
	ws := tcsv1.NewWorkServiceClient(conn)
	return func(id string, token uint64) *tcsv1.ValidateResponse {
		t.Helper()
		res, err := ws.Validate(context.Background(), &tcsv1.ValidateRequest{Pool: pool, TenantId: id, Token: token})
		if err != nil {
			t.Fatalf("Validate(%s, %d): %v", id, token, err)
		}
		return res
	}
}
