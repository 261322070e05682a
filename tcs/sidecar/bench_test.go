package sidecar_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tcs-dev/tcs/tcs/sidecar"
)

// discardWriter is a ResponseWriter that keeps nothing but its header map,
// cleared between requests as net/http's server does.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkServeHTTPHit is the sidecar's own cost of one HTTP lookup that
// hits (the handler, headers and body write; not the client's cache nor
// net/http's connection handling): the part of cmd/tcs-sidecar's
// BenchmarkSidecar http figure the sidecar adds.
func BenchmarkServeHTTPHit(b *testing.B) {
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	s := sidecar.New(sidecar.Config{Client: f})
	r := httptest.NewRequest("GET", "/v1/lookup/acme.example.com", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		s.ServeHTTP(w, r)
	}
}

// BenchmarkServeFastHTTPHit is BenchmarkServeHTTPHit on ServeFastHTTP,
// what cmd/tcs-sidecar serves: the plain target recognised, its hostname
// interned, the lookup, the headers set in fasthttp's response and the
// cached body handed to it (not fasthttp's reading and writing).
func BenchmarkServeFastHTTPHit(b *testing.B) {
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	s := sidecar.New(sidecar.Config{Client: f})
	var req fasthttp.Request
	req.SetRequestURI("/v1/lookup/acme.example.com")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		s.ServeFastHTTP(&ctx)
	}
}
