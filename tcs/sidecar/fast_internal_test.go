package sidecar

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestServeErrorTimeout: a request fasthttp's server gave up reading in
// time (ReadTimeout) is answered 408 with a problem, and the connection
// closed. (The other errors are TestServeRefusesUnreadableRequests'.)
func TestServeErrorTimeout(t *testing.T) {
	t.Parallel()
	s := New(Config{Client: nopClient{}})
	for _, err := range []error{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, errors.New("bad request line")} {
		var ctx fasthttp.RequestCtx
		s.serveError(&ctx, err)
		var p Problem
		if jerr := json.Unmarshal(ctx.Response.Body(), &p); jerr != nil {
			t.Fatalf("%v: body %q: %v", err, ctx.Response.Body(), jerr)
		}
		want, status := "urn:tcs:problem:request_timeout", 408
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			want, status = "urn:tcs:problem:malformed_request", 400
		}
		if ctx.Response.StatusCode() != status || p.Type != want || string(ctx.Response.Header.ContentType()) != "application/problem+json" || !ctx.Response.ConnectionClose() {
			t.Errorf("%v: %d %s %+v, want %d %s and Connection: close", err, ctx.Response.StatusCode(), ctx.Response.Header.ContentType(), p, status, want)
		}
	}
}
