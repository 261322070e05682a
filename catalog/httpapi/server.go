// Package httpapi is the catalog's admin REST API: tenants, hostnames,
// history, product activation and the SRE operations (resync, export) over
// JSON, with roles established from bearer tokens or client certificates
// (internal/auth), RFC 9457 problem responses, an OpenAPI document, health
// and metrics.
package httpapi

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/logevery"
	"github.com/tcs-dev/tcs/internal/requestid"
)

// DefaultMaxBodyBytes caps request bodies. A tenant document is a few KiB at
// most; anything near this is a mistake or an attack.
const DefaultMaxBodyBytes = 64 << 10

//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3 document describing the API.
func OpenAPI() []byte { return openAPIDocument }

// Config wires a Server.
type Config struct {
	Store catalog.Store
	// Auth establishes callers (bearer tokens, client certificates); nil
	// accepts nobody, so only the open routes answer.
	Auth *auth.Authenticator
	// Logger nil means discard.
	Logger *slog.Logger
	// Registry receives the API's metrics and is served on /metrics. Nil
	// means a new registry with the Go and process collectors.
	Registry *prometheus.Registry
	// Registerer, if set, registers the API's metrics instead of Registry
	// (which is still what /metrics serves): a wrapper of Registry adding
	// labels, such as the binary's component.
	Registerer prometheus.Registerer
	// MaxBodyBytes 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// StoreTimeout bounds the store calls of one request together, counted
	// from the first: a store that has not answered by then gets the
	// request a 503 (a write "outcome unknown"). 0 (or less) means
	// DefaultStoreTimeout; so for the fields below.
	StoreTimeout time.Duration
	// ReadyTimeout bounds /readyz's store ping; 0 means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// RetryAfter is the Retry-After of 503 answers (whole seconds, at
	// least 1); 0 means DefaultRetryAfter.
	RetryAfter time.Duration
	// MaxStoreCalls bounds the store calls in flight, counting calls that
	// outlived their deadline because the store ignores its context; 0
	// means DefaultMaxStoreCalls.
	MaxStoreCalls int
	// Now is the clock of /readyz's cache; nil means time.Now.
	Now func() time.Time
	// RateLimits bounds each caller's and each client address's request
	// rate; nil means DefaultRateLimits.
	RateLimits *RateLimits
	// Propagation answers GET /v1/tenants/{id}/propagation; nil: that
	// route answers 501 not_configured.
	Propagation Propagation
}

// Server serves the admin REST API. It is an http.Handler.
type Server struct {
	store    catalog.Store
	auth     *auth.Authenticator
	log      *slog.Logger
	maxBody  int64
	mux      *http.ServeMux
	registry *prometheus.Registry

	storeTimeout time.Duration
	readyTimeout time.Duration
	retryAfter   string
	slots        chan struct{}
	now          func() time.Time
	readiness    readiness

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	timeouts *prometheus.CounterVec

	propagation Propagation
	// propagationWaits times the propagation waits by outcome.
	propagationWaits *prometheus.HistogramVec

	limits      *limiter
	rateLimited *prometheus.CounterVec
	// failLog, limitLog and anonLog hold back repeated "request failed",
	// "rate limited" and unauthenticated failed "request" lines.
	failLog, limitLog, anonLog logevery.Limiter
}

// positiveOr returns v, or def when v is not positive.
func positiveOr[T cmp.Ordered](v, def T) T {
	var zero T
	if v <= zero {
		return def
	}
	return v
}

// route is one operation of the API. SpecPath is its path in openapi.json;
// several operations may share one mux pattern (the product actions do).
type route struct {
	Method   string
	SpecPath string
	Pattern  string
	Role     auth.Role // "": open to anyone
}

// handlerFunc is an API handler: it writes a success response or returns an
// error, which the server turns into a problem response.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// New returns a Server for cfg.
func New(cfg Config) *Server {
	s := &Server{
		store:    cfg.Store,
		auth:     cfg.Auth,
		log:      cfg.Logger,
		maxBody:  cfg.MaxBodyBytes,
		mux:      http.NewServeMux(),
		registry: cfg.Registry,

		storeTimeout: positiveOr(cfg.StoreTimeout, DefaultStoreTimeout),
		readyTimeout: positiveOr(cfg.ReadyTimeout, DefaultReadyTimeout),
		retryAfter:   strconv.Itoa(max(1, int(math.Ceil(positiveOr(cfg.RetryAfter, DefaultRetryAfter).Seconds())))),
		slots:        make(chan struct{}, positiveOr(cfg.MaxStoreCalls, DefaultMaxStoreCalls)),
		now:          cfg.Now,
		propagation:  cfg.Propagation,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.auth == nil {
		s.auth = auth.Static(&auth.Set{})
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
		s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	limits := DefaultRateLimits()
	if cfg.RateLimits != nil {
		limits = *cfg.RateLimits
	}
	s.limits = newLimiter(limits)
	s.failLog.Every, s.limitLog.Every, s.anonLog.Every = time.Second, 10*time.Second, 100*time.Millisecond
	s.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_catalog_http_rate_limited_total",
		Help: "Admin API requests refused with 429 by a rate limit, by what was limited: caller (an authenticated credential) or address (a client address, before or without authentication).",
	}, []string{"by"})
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_catalog_http_requests_total",
		Help: "Admin API requests by route, method and status code.",
	}, []string{"route", "method", "code"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tcs_catalog_http_request_duration_seconds",
		Help:    "Admin API request latency by route and method.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
	}, []string{"route", "method"})
	s.timeouts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_catalog_store_timeouts_total",
		Help: "Store calls that did not answer within the store deadline (--store-timeout), by catalog.Store method.",
	}, []string{"method"})
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tcs_catalog_store_calls_in_flight",
		Help: "Store calls running, including calls that outlived their deadline because the store ignores its context; at the limit (MaxStoreCalls) new calls wait.",
	}, func() float64 { return float64(len(s.slots)) })
	s.propagationWaits = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tcs_catalog_propagation_wait_seconds",
		Help:    "GET /v1/tenants/{id}/propagation calls with wait= (tcsctl wait), from the call until the answer, by outcome: done (every region reached the version), lagging (the wait ended first; the answer names who lags), error (the nodes could not be asked), canceled (the caller went away).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25},
	}, []string{"outcome"})
	for _, o := range []string{waitDone, waitLagging, waitError, waitCanceled} {
		s.propagationWaits.WithLabelValues(o)
	}
	var registerer prometheus.Registerer = s.registry
	if cfg.Registerer != nil {
		registerer = cfg.Registerer
	}
	registerer.MustRegister(s.requests, s.duration, s.timeouts, inFlight, s.rateLimited, s.propagationWaits)

	handlers := map[string]handlerFunc{
		"POST /v1/tenants":                        s.createTenant,
		"GET /v1/tenants":                         s.listTenants,
		"GET /v1/tenants/{id}":                    s.getTenant,
		"PUT /v1/tenants/{id}":                    s.replaceTenant,
		"PATCH /v1/tenants/{id}":                  s.patchTenant,
		"DELETE /v1/tenants/{id}":                 s.deleteTenant,
		"GET /v1/tenants/{id}/history":            s.tenantHistory,
		"GET /v1/tenants/{id}/propagation":        s.tenantPropagation,
		"POST /v1/tenants/{id}/products/{action}": s.productAction,
		"GET /v1/hostnames/{hostname}":            s.lookupHostname,
		"POST /v1/admin/resync":                   s.resync,
		"GET /v1/admin/export":                    s.export,
		"GET /v1/admin/digests":                   s.digests,
		"GET /v1/admin/history":                   s.adminHistory,
		"GET /openapi.json":                       s.openAPI,
		"GET /healthz":                            s.healthz,
		"GET /readyz":                             s.readyz,
		"GET /metrics":                            s.metrics(),
	}
	registered := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Pattern
		if registered[key] {
			continue
		}
		registered[key] = true
		s.mux.Handle(key, s.endpoint(rt.Role, s.limited(handlers[key])))
	}
	return s
}

// routes lists every operation; openapi_test.go checks it against
// openapi.json in both directions.
var routes = []route{
	{http.MethodPost, "/v1/tenants", "/v1/tenants", auth.Admin},
	{http.MethodGet, "/v1/tenants", "/v1/tenants", auth.Reader},
	{http.MethodGet, "/v1/tenants/{id}", "/v1/tenants/{id}", auth.Reader},
	{http.MethodPut, "/v1/tenants/{id}", "/v1/tenants/{id}", auth.Admin},
	{http.MethodPatch, "/v1/tenants/{id}", "/v1/tenants/{id}", auth.Admin},
	{http.MethodDelete, "/v1/tenants/{id}", "/v1/tenants/{id}", auth.Admin},
	{http.MethodGet, "/v1/tenants/{id}/history", "/v1/tenants/{id}/history", auth.Reader},
	{http.MethodGet, "/v1/tenants/{id}/propagation", "/v1/tenants/{id}/propagation", auth.Reader},
	{http.MethodPost, "/v1/tenants/{id}/products/{product}:activate", "/v1/tenants/{id}/products/{action}", auth.Admin},
	{http.MethodPost, "/v1/tenants/{id}/products/{product}:deactivate", "/v1/tenants/{id}/products/{action}", auth.Admin},
	{http.MethodGet, "/v1/hostnames/{hostname}", "/v1/hostnames/{hostname}", auth.Reader},
	{http.MethodPost, "/v1/admin/resync", "/v1/admin/resync", auth.Admin},
	{http.MethodGet, "/v1/admin/export", "/v1/admin/export", auth.Reader},
	{http.MethodGet, "/v1/admin/digests", "/v1/admin/digests", auth.Reader},
	{http.MethodGet, "/v1/admin/history", "/v1/admin/history", auth.Reader},
	{http.MethodGet, "/openapi.json", "/openapi.json", ""},
	{http.MethodGet, "/healthz", "/healthz", ""},
	{http.MethodGet, "/readyz", "/readyz", ""},
	{http.MethodGet, "/metrics", "/metrics", ""},
}

// ServeHTTP routes the request, records metrics, and answers unknown routes
// and methods with problem documents instead of the mux's plain text. A
// request that is not authenticated (an unknown route, an open route,
// missing or failed credentials) from an address that has spent its rate
// limit gets 429 (see endpoint), and counts against its address. A
// request with valid credentials is limited as its caller only: behind a
// proxy or a NAT callers share an address, and anonymous traffic must not
// lock them out. Metric labels come from fixed sets: the
// route's pattern or "unmatched", a known method or "other".
//
// Every request gets a request id: the caller's X-Request-Id if sane
// (requestid.Valid), else a fresh one. It is returned as X-Request-Id and
// names the request on its log lines. Scrapes and probes (/metrics,
// /healthz, /readyz) that succeed are logged at debug, other requests at
// info.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := requestid.Accept(r.Header.Get(requestid.Header))
	w.Header().Set(requestid.Header, id)
	r = r.WithContext(requestid.NewContext(r.Context(), id))
	rec := &statusRecorder{ResponseWriter: w}
	addr := clientAddress(r)
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		pattern = "unmatched"
	}
	switch {
	case pattern == "unmatched":
		if err := s.limits.spent(addr); err != nil {
			rec.charged = true
			s.writeError(rec, r, err)
			break
		}
		s.serveUnmatched(rec, r)
	default:
		s.mux.ServeHTTP(rec, r)
	}
	if !rec.charged {
		_ = s.limits.take("", addr)
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	elapsed := time.Since(start)
	method := methodLabel(r.Method)
	s.requests.WithLabelValues(pattern, method, statusLabel(rec.status)).Inc()
	s.duration.WithLabelValues(pattern, method).Observe(elapsed.Seconds())
	if rec.status == http.StatusTooManyRequests {
		return // counted, and logged now and then by writeError
	}
	attrs := []slog.Attr{slog.String("request_id", id), slog.String("method", method), slog.String("path", truncate(r.URL.Path, 256)), slog.String("route", pattern),
		slog.Int("status", rec.status), slog.Duration("duration", elapsed), slog.String("actor", rec.actor)}
	level := slog.LevelInfo
	if probeRoutes[pattern] && rec.status < 400 {
		level = slog.LevelDebug
	}
	if rec.actor == "" && rec.status >= 400 {
		// Failures without a caller (unknown routes, bad credentials)
		// are what a flood from many addresses sends: at most ten lines
		// a second.
		n, ok := s.anonLog.Allow(time.Now())
		if !ok {
			return
		}
		attrs = append(attrs, slog.Int("unauthenticated_failures_held_back", n))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// probeRoutes are scraped and probed every few seconds: logged at debug.
var probeRoutes = map[string]bool{"GET /metrics": true, "GET /healthz": true, "GET /readyz": true}

// serveUnmatched asks the mux why nothing matched (404, or 405 with Allow)
// and answers with a problem document.
func (s *Server) serveUnmatched(w *statusRecorder, r *http.Request) {
	h, _ := s.mux.Handler(r)
	probe := &headerProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		s.writeError(w, r, requestError(codeMethodNotAllowed, "", "method "+truncate(r.Method, 16)+" is not allowed on "+truncate(r.URL.Path, 256)+"; allowed: "+probe.header.Get("Allow")))
		return
	}
	s.writeError(w, r, requestError(codeRouteNotFound, "", "no route for "+truncate(r.Method, 16)+" "+truncate(r.URL.Path, 256)))
}

// endpoint wraps a handler with authentication and error handling. An
// authenticated request's context carries the caller's auth.Identity.
func (s *Server) endpoint(need auth.Role, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if need == "" {
			if err := s.limits.spent(clientAddress(r)); err != nil {
				if rec, ok := w.(*statusRecorder); ok {
					rec.charged = true
				}
				s.writeError(w, r, err)
				return
			}
		}
		if need != "" {
			id, err := s.authenticate(r, need)
			if err != nil {
				// Credentials that fail from an address that has spent
				// its budget get 429, like anonymous requests, so that
				// guessing tokens is limited too.
				if spent := s.limits.spent(clientAddress(r)); spent != nil {
					if rec, ok := w.(*statusRecorder); ok {
						rec.charged = true
					}
					err = spent
				}
				s.writeError(w, r, err)
				return
			}
			if rec, ok := w.(*statusRecorder); ok {
				rec.actor = id.Name
			}
			r = r.WithContext(auth.NewContext(r.Context(), id))
		}
		r = withBudget(r)
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openAPIDocument)
	return err
}

func (s *Server) metrics() handlerFunc {
	h := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})
	return func(w http.ResponseWriter, r *http.Request) error {
		h.ServeHTTP(w, r)
		return nil
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, "application/json", map[string]string{"status": "ok"})
	return nil
}

// healthz answers 200 while the process serves HTTP, whatever the store's
// state: restarting a catalog does not mend its store. readyz answers 200
// only when the store answered a ping within ReadyTimeout (the answer is
// reused for a second), so load balancers send traffic elsewhere while the
// store is down or frozen.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.ready(r.Context()); err != nil {
		var none *noAnswer
		if errors.Is(err, context.Canceled) || errors.As(err, &none) {
			return err
		}
		return &tenant.Error{Code: tenant.Unavailable, Message: "source of truth not ready: " + err.Error()}
	}
	writeJSON(w, http.StatusOK, "application/json", map[string]string{"status": "ready"})
	return nil
}

// Ready is /readyz's check, for a metrics port that serves the probes
// apart from the API: nil when the store answered a ping within
// ReadyTimeout (cached as /readyz's answer is), else why not.
func (s *Server) Ready(ctx context.Context) error { return s.ready(ctx) }

// statusRecorder remembers the status written, for metrics and logs.
type statusRecorder struct {
	http.ResponseWriter
	status int
	actor  string
	// charged: the request was counted against a rate limit.
	charged bool
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// headerProbe captures what the mux's own 404/405 handler would write.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(code int)        { p.status = code }
