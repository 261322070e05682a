package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Why fasthttp: BenchmarkSidecar (cmd/tcs-sidecar) measured a bare
// net/http server at 1.9× a bare TCP ping-pong between two processes on
// loopback at one caller (47 µs against 24 at the median), and a bare
// fasthttp server at the ping-pong (26): per request net/http starts a
// goroutine that reads the connection in the background while the handler
// runs and wakes it to stop it afterwards, a hand-off between threads (two
// futex calls a request, where fasthttp makes 0.1) that costs more than
// the rest of a hit. fasthttp reads, handles and writes on one goroutine. The lookup is served on
// fasthttp's request directly; every other route goes through
// fasthttpadaptor to ServeHTTP, so that there is one route table.
//
// A hit on ServeFastHTTP costs about what ServeHTTP's does on its own
// (BenchmarkServeFastHTTPHit against BenchmarkServeHTTPHit: some 250 ns
// against 200, no allocation; it was 800 ns and 3 allocations): a plain
// target is not parsed (plainLookup), its hostname is an interned string
// (hostnames), the hit's headers go straight into fasthttp's (hitHeaders
// through fastHeader, no http.Header between) and the body is the cached
// encoding itself (SetBodyRaw), not a copy.

// Adapt serves h, a net/http handler (ServeHTTP, or ServeHTTP wrapped), on
// fasthttp (Serve) through fasthttpadaptor. Its requests' context is not
// cancelled when Serve starts shutting down, as net/http's is not. A
// target net/http cannot parse (a bad escape), which net/http's server
// answers 400 without calling its handler and fasthttpadaptor would answer
// 500, is answered 400 malformed_request, as ServeFastHTTP answers it.
func (s *Server) Adapt(h http.Handler) fasthttp.RequestHandler {
	adapted := fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithoutCancel(r.Context())))
	}))
	return func(ctx *fasthttp.RequestCtx) {
		if _, err := url.ParseRequestURI(string(ctx.RequestURI())); err != nil {
			s.badTarget(ctx, err)
			return
		}
		adapted(ctx)
	}
}

// badTarget answers a request whose target net/http cannot parse.
func (s *Server) badTarget(ctx *fasthttp.RequestCtx, err error) {
	s.serveError(ctx, fmt.Errorf("request target: %w", err))
}

// ServeFastHTTP is ServeHTTP for a fasthttp server (Serve): a lookup
// (/v1/lookup/{hostname}) is answered on ctx itself, a hit allocating
// nothing; anything else (the batch, Config.Fallback, the problems of
// other routes) is handed to ServeHTTP through fasthttpadaptor. Both answer
// alike, byte for byte. A target net/http cannot parse (a bad escape),
// which net/http's server answers 400 without calling ServeHTTP, is
// answered 400 malformed_request, as Serve answers a request it cannot
// read.
func (s *Server) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	var r request
	if host, ok := plainLookup(ctx.RequestURI()); ok {
		r.hostname = s.names.of(host)
	} else {
		// Parsed as net/http parses it, not routed by fasthttp's Path,
		// which is normalised ("/v1/lookup/a/../b" is a hostname net/http
		// would refuse) and has lost any fragment.
		u, err := url.ParseRequestURI(string(ctx.RequestURI()))
		if err != nil {
			// net/http answers such a request 400 itself, never calling
			// ServeHTTP; fasthttpadaptor would answer it 500.
			s.badTarget(ctx, err)
			return
		}
		if !strings.HasPrefix(u.Path, lookupPrefix) {
			s.adapted(ctx)
			return
		}
		r.hostname, r.rawQuery = u.Path[len(lookupPrefix):], u.RawQuery
	}
	// Not ctx: fasthttp ends it when the server starts shutting down, and
	// a lookup in flight then is to be finished, not cancelled.
	r.ctx = context.Background()
	r.method = fastMethod(ctx)
	var w *fastWriter
	e, meta, start := s.lookup(&r, func() http.ResponseWriter {
		w = fastWriters.Get().(*fastWriter)
		w.ctx = ctx
		return w
	})
	if e != nil {
		// Straight into fasthttp's header, with no map between; the body
		// is the encoding itself, which nothing modifies.
		hitHeaders(s, fastHeader{&ctx.Response.Header}, e, &meta)
		ctx.SetStatusCode(http.StatusOK)
		ctx.Response.SetBodyRaw(e.json)
		s.m.http[opLookup][outcomeOK].observe(start)
		return
	}
	w.WriteHeader(http.StatusOK) // nothing written yet: an empty 200, as net/http
	w.ctx, w.wrote = nil, false
	clear(w.h)
	fastWriters.Put(w)
}

var lookupPrefixBytes = []byte(lookupPrefix)

// plainLookup returns the hostname of uri, a request's target, when it is
// lookupPrefix followed by a plain hostname: ASCII letters, digits, '-',
// '.', '_' and '~' only (no '%', '?', '#', '/', '\\', nothing else and
// nothing non-ASCII), and not a dot segment ("." or ".."). Such a target
// is its own path to net/http (ParseRequestURI: no escape, no query) and
// to fasthttp (no normalisation), so both route it to the lookup of
// exactly these bytes, and it needs no parse. Anything else is parsed as
// net/http parses it.
func plainLookup(uri []byte) ([]byte, bool) {
	host, ok := bytes.CutPrefix(uri, lookupPrefixBytes)
	if !ok {
		return nil, false
	}
	for _, c := range host {
		if !plainByte[c] {
			return nil, false
		}
	}
	if string(host) == "." || string(host) == ".." {
		return nil, false
	}
	return host, true
}

// plainByte is the bytes of a plain hostname (plainLookup): RFC 3986's
// unreserved characters.
var plainByte = func() (t [256]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
	}
	return t
}()

// fastMethod is ctx's method, allocating nothing for GET and HEAD.
func fastMethod(ctx *fasthttp.RequestCtx) string {
	switch {
	case ctx.IsGet():
		return http.MethodGet
	case ctx.IsHead():
		return http.MethodHead
	}
	return string(ctx.Method())
}

// fastHeader is fasthttp's response header as a headerSetter (hitHeaders).
type fastHeader struct{ h *fasthttp.ResponseHeader }

func (h fastHeader) set(name *headerName, v *headerValue) { h.h.SetCanonical(name.b, v.b) }

// fastWriter is the http.ResponseWriter of a lookup on a fasthttp request
// that does not hit.
type fastWriter struct {
	ctx   *fasthttp.RequestCtx
	h     http.Header
	wrote bool
}

var fastWriters = sync.Pool{New: func() any { return &fastWriter{h: make(http.Header, 8)} }}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(status int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.ctx.SetStatusCode(status)
	if _, ok := w.h["Content-Type"]; !ok {
		w.ctx.Response.Header.SetNoDefaultContentType(true) // as net/http: none
	}
	for k, vs := range w.h {
		for _, v := range vs {
			w.ctx.Response.Header.Add(k, v)
		}
	}
}

func (w *fastWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.ctx.Write(p)
}

// serveError answers a request fasthttp could not read (ErrorHandler) with
// a problem, as ServeHTTP answers one it cannot use.
func (s *Server) serveError(ctx *fasthttp.RequestCtx, err error) {
	var p *Problem
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		p = newProblem(codeTooLarge, fmt.Sprintf("the body is over %d bytes", MaxBatchBody))
	case errors.As(err, new(*fasthttp.ErrSmallBuffer)):
		p = newProblem(codeHeaderTooLarge, fmt.Sprintf("the request's line and headers are over %d bytes", MaxHeaderBytes))
	default:
		var timeout interface{ Timeout() bool }
		if errors.As(err, &timeout) && timeout.Timeout() {
			p = newProblem(codeTimeout, "the request was not read in time")
		} else {
			p = newProblem(codeMalformed, "malformed HTTP request: "+err.Error())
		}
	}
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	w := &fastWriter{ctx: ctx, h: http.Header{}}
	s.writeProblem(w, "", p)
}

// MaxHeaderBytes bounds a request's line and headers on Serve.
const MaxHeaderBytes = 16 << 10

// Timeouts of Serve: a request must arrive whole within ReadTimeout of its
// first byte, its answer be written within WriteTimeout, and a kept-alive
// connection gets IdleTimeout to send its next request.
const (
	ReadTimeout  = 5 * time.Second
	WriteTimeout = 30 * time.Second
	IdleTimeout  = 2 * time.Minute
)

// ShutdownTimeout bounds how long Serve waits for requests in flight once
// its context ends.
const ShutdownTimeout = 10 * time.Second

// Serve serves h (ServeFastHTTP, or fasthttpadaptor of a wrapped ServeHTTP)
// on every listener of lns with fasthttp until ctx ends, then stops
// accepting, lets requests in flight finish (up to ShutdownTimeout, answers
// saying Connection: close), closes the kept-alive connections and returns
// nil. Requests fasthttp cannot read (a body over MaxBatchBody, headers
// over MaxHeaderBytes, bad syntax, too slow) are answered with a problem.
func (s *Server) Serve(ctx context.Context, h fasthttp.RequestHandler, lns ...net.Listener) error {
	srv := &fasthttp.Server{
		Handler:               h,
		ErrorHandler:          s.serveError,
		ReadTimeout:           ReadTimeout,
		WriteTimeout:          WriteTimeout,
		IdleTimeout:           IdleTimeout,
		ReadBufferSize:        MaxHeaderBytes,
		MaxRequestBodySize:    MaxBatchBody,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		Logger:                fastLogger{s},
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
	}
	var err error
	select {
	case err = <-errc: // a listener failed: stop the others
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if serr := srv.ShutdownWithContext(sctx); err == nil {
		err = serr
	}
	return err
}

// fastLogger sends fasthttp's complaints to the sidecar's logger.
type fastLogger struct{ s *Server }

func (l fastLogger) Printf(format string, args ...any) {
	l.s.log.Warn("http server: " + fmt.Sprintf(format, args...))
}
