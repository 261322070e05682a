//go:build linux

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Ack is a write the catalog acknowledged (2xx), with the state it reported.
type Ack struct {
	Op        string            `json:"op"`
	ID        string            `json:"id"`
	Version   int64             `json:"version"`
	Deleted   bool              `json:"deleted,omitempty"`
	Hostnames []string          `json:"hostnames,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	At        time.Time         `json:"at"`
	// Committed is the document's updated_at: when the catalog committed
	// it (zero for deletes, which answer without a document).
	Committed time.Time `json:"committed,omitzero"`
}

// WriteAttempt is one request of the writer and how it ended: Status is the
// HTTP status code, or "timeout", "refused" or "conn" when no answer came.
type WriteAttempt struct {
	Op      string        `json:"op"`
	ID      string        `json:"id"`
	Start   time.Time     `json:"start"`
	Latency time.Duration `json:"latency_ns"`
	Status  string        `json:"status"`
	OK      bool          `json:"ok"`
	// NoRetryAfter: a 503 without a Retry-After header.
	NoRetryAfter bool `json:"no_retry_after,omitempty"`
}

// tenantState is the writer's model of one tenant.
type tenantState struct {
	id        string
	version   int64
	hostnames []string
	labels    map[string]string
	live      bool // created (acknowledged or found) and not deleted
	deleted   bool
	// uncertain: a write's outcome is unknown; the next operation reads the
	// tenant back first.
	uncertain bool
	// unknownAfterAck: a write whose outcome is unknown was sent after the
	// last acknowledged one, so the catalog may hold a later version.
	unknownAfterAck bool
	// deleteSent: a delete was sent (it may have been committed even if
	// it was not acknowledged).
	deleteSent  bool
	seq         int
	secondaries int
}

// Writer writes through the catalog's REST API at a steady rate: creates,
// label updates, hostname additions, hostname moves between tenants and
// deletes, from several workers that each own their tenants (so no two
// workers race on one tenant). It records every acknowledged write and
// every attempt.
type Writer struct {
	base    string
	client  *http.Client
	workers int
	rate    float64 // writes per second, all workers together

	mu       sync.Mutex
	acks     []Ack
	attempts []WriteAttempt
	tenants  map[string]*tenantState
	order    []string // tenant ids in creation order
	hosts    []string // what readers look up
}

// MaxLiveTenantsPerWorker bounds each worker's live tenants; deletes keep
// the set turning over.
const MaxLiveTenantsPerWorker = 10

// NewWriter returns a writer of the catalog at base (http://host:port).
// timeout bounds each request: a request without an answer by then counts
// as "timeout" (outcome unknown).
func NewWriter(base string, workers int, rate float64, timeout time.Duration) *Writer {
	return &Writer{
		base: base, workers: workers, rate: rate,
		client:  &http.Client{Timeout: timeout},
		tenants: map[string]*tenantState{},
	}
}

// Run writes until ctx ends.
func (w *Writer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for k := range w.workers {
		wg.Go(func() { w.work(ctx, k) })
	}
	wg.Wait()
}

// Hosts returns the hostnames readers should look up: those of live
// tenants, and the primary hostnames of deleted ones (which must answer
// not found).
func (w *Writer) Hosts() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hosts
}

// Acks returns every acknowledged write so far.
func (w *Writer) Acks() []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// Attempts returns every request so far.
func (w *Writer) Attempts() []WriteAttempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.attempts)
}

// Snapshot is the writer's last known state of every tenant it is sure of
// (tenants whose last write's outcome is unknown are left out).
type Snapshot map[string]Ack

// Snapshot returns the acknowledged state of every tenant.
func (w *Writer) Snapshot() Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Snapshot{}
	for id, t := range w.tenants {
		if t.uncertain || t.unknownAfterAck || t.version == 0 {
			continue
		}
		s[id] = Ack{ID: id, Version: t.version, Deleted: t.deleted, Hostnames: slices.Clone(t.hostnames)}
	}
	return s
}

// DeleteSent reports whether a delete of the tenant was sent.
func (w *Writer) DeleteSent(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.tenants[id]
	return t != nil && t.deleteSent
}

// UnknownAfterAck lists tenants that may hold a version later than their
// last acknowledged one (a write with an unknown outcome followed it).
func (w *Writer) UnknownAfterAck() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]bool{}
	for id, t := range w.tenants {
		if t.unknownAfterAck {
			m[id] = true
		}
	}
	return m
}

func primaryHost(id string) string { return id + ".chaos.test" }

func (w *Writer) work(ctx context.Context, k int) {
	interval := time.Duration(float64(w.workers) / w.rate * float64(time.Second))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	rng := rand.New(rand.NewPCG(uint64(k), uint64(time.Now().UnixNano())))
	var mine []*tenantState
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Tenants whose last write's outcome is unknown are read back first.
		for _, t := range mine {
			if t.uncertain && ctx.Err() == nil {
				w.refresh(ctx, t)
			}
		}
		live := mine[:0:0]
		for _, t := range mine {
			if t.live && !t.uncertain {
				live = append(live, t)
			}
		}
		p := rng.Float64()
		switch {
		case len(live) < MaxLiveTenantsPerWorker/2 || (p < 0.15 && len(live) < MaxLiveTenantsPerWorker):
			next++
			t := &tenantState{id: fmt.Sprintf("chaos-w%d-%d", k, next)}
			w.mu.Lock()
			w.tenants[t.id] = t
			w.order = append(w.order, t.id)
			w.mu.Unlock()
			mine = append(mine, t)
			w.create(ctx, t)
		case p < 0.60 || len(live) < 2:
			t := live[rng.IntN(len(live))]
			t.seq++
			w.patch(ctx, "update", t, map[string]any{"labels": map[string]string{"seq": strconv.Itoa(t.seq)}})
		case p < 0.72:
			t := live[rng.IntN(len(live))]
			t.secondaries++
			h := fmt.Sprintf("%s-s%d.chaos.test", t.id, t.secondaries)
			w.patch(ctx, "add-hostname", t, map[string]any{"hostnames": append(slices.Clone(t.hostnames), h)})
		case p < 0.88:
			// Move a hostname other than the primary from one tenant to
			// another: release it, then claim it.
			from, to := live[rng.IntN(len(live))], live[rng.IntN(len(live))]
			var movable []string
			for _, h := range from.hostnames {
				if h != primaryHost(from.id) {
					movable = append(movable, h)
				}
			}
			if from == to || len(movable) == 0 {
				continue
			}
			h := movable[rng.IntN(len(movable))]
			if !w.patch(ctx, "move-release", from, map[string]any{"hostnames": slices.DeleteFunc(slices.Clone(from.hostnames), func(x string) bool { return x == h })}) {
				continue
			}
			w.patch(ctx, "move-claim", to, map[string]any{"hostnames": append(slices.Clone(to.hostnames), h)})
		default:
			if len(live) <= 2 {
				continue
			}
			w.delete(ctx, live[rng.IntN(len(live))])
		}
	}
}

// do sends one request and records the attempt; it returns the status code
// (0 when no answer came) and the body, and answered false when ctx ended
// first (the run is over; such a request is not recorded, but its outcome
// is unknown).
func (w *Writer) do(ctx context.Context, op, id, method, path, contentType, ifMatch string, body any) (int, []byte, bool) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, w.base+path, r)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	start := time.Now()
	res, err := w.client.Do(req)
	a := WriteAttempt{Op: op, ID: id, Start: start}
	var code int
	var data []byte
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, false // the run ended; not an outcome of the system
		}
		a.Status = transportStatus(err)
	} else {
		data, _ = io.ReadAll(res.Body)
		res.Body.Close()
		code = res.StatusCode
		a.Status = strconv.Itoa(code)
		a.OK = code/100 == 2
		a.NoRetryAfter = code == http.StatusServiceUnavailable && res.Header.Get("Retry-After") == ""
	}
	a.Latency = time.Since(start)
	if method == http.MethodGet {
		return code, data, true
	}
	w.mu.Lock()
	w.attempts = append(w.attempts, a)
	w.mu.Unlock()
	return code, data, true
}

// transportStatus names a request that got no answer.
func transportStatus(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "conn"
}

// outcomeUnknown: a request without an answer, or with a 5xx, may have been
// committed.
func outcomeUnknown(code int) bool { return code == 0 || code >= 500 }

func (w *Writer) create(ctx context.Context, t *tenantState) {
	hosts := []string{primaryHost(t.id)}
	body := map[string]any{"id": t.id, "hostnames": hosts, "labels": map[string]string{"seq": "0"}}
	code, data, answered := w.do(ctx, "create", t.id, http.MethodPost, "/v1/tenants", "application/json", "", body)
	if !answered { // cancelled by the run's end: it may have been committed
		w.markUnknown(t)
		return
	}
	switch {
	case code == http.StatusCreated:
		w.acked("create", t, data)
	case outcomeUnknown(code):
		w.markUnknown(t)
	default:
		w.setUncertain(t) // read back what is there
	}
}

// patch sends a merge patch; it reports whether it was acknowledged.
func (w *Writer) patch(ctx context.Context, op string, t *tenantState, body any) bool {
	code, data, answered := w.do(ctx, op, t.id, http.MethodPatch, "/v1/tenants/"+t.id, "application/merge-patch+json", etag(t.version), body)
	if !answered { // cancelled by the run's end: it may have been committed
		w.markUnknown(t)
		return false
	}
	switch {
	case code == http.StatusOK:
		w.acked(op, t, data)
		return true
	case outcomeUnknown(code):
		w.markUnknown(t)
	default:
		w.setUncertain(t)
	}
	return false
}

func (w *Writer) delete(ctx context.Context, t *tenantState) {
	w.mu.Lock()
	t.deleteSent = true
	w.mu.Unlock()
	code, _, answered := w.do(ctx, "delete", t.id, http.MethodDelete, "/v1/tenants/"+t.id, "", etag(t.version), nil)
	if !answered { // cancelled by the run's end: it may have been committed
		w.markUnknown(t)
		return
	}
	switch {
	case code == http.StatusNoContent:
		w.mu.Lock()
		t.version++
		t.live, t.deleted, t.unknownAfterAck = false, true, false
		w.acks = append(w.acks, Ack{Op: "delete", ID: t.id, Version: t.version, Deleted: true, At: time.Now()})
		w.updateHostsLocked()
		w.mu.Unlock()
	case outcomeUnknown(code):
		w.markUnknown(t)
	default:
		w.setUncertain(t)
	}
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

func (w *Writer) setUncertain(t *tenantState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t.uncertain = true
}

func (w *Writer) markUnknown(t *tenantState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t.uncertain = true
	if t.version > 0 {
		t.unknownAfterAck = true
	}
}

// acked records an acknowledged create or patch from the returned document.
func (w *Writer) acked(op string, t *tenantState, body []byte) {
	var doc tenant.Tenant
	if err := json.Unmarshal(body, &doc); err != nil || doc.Version == 0 {
		// A 2xx without the document: keep the write as unknown rather
		// than guess its version.
		w.markUnknown(t)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.version, t.hostnames, t.labels = doc.Version, doc.Hostnames, doc.Labels
	t.live, t.unknownAfterAck = true, false
	w.acks = append(w.acks, Ack{Op: op, ID: t.id, Version: doc.Version, Hostnames: slices.Clone(doc.Hostnames), Labels: doc.Labels, At: time.Now(), Committed: doc.UpdatedAt})
	w.updateHostsLocked()
}

// refresh reads a tenant whose last write's outcome is unknown.
func (w *Writer) refresh(ctx context.Context, t *tenantState) {
	code, data, answered := w.do(ctx, "read", t.id, http.MethodGet, "/v1/tenants/"+t.id, "", "", nil)
	if !answered {
		return
	}
	switch code {
	case http.StatusOK:
		var doc tenant.Tenant
		if err := json.Unmarshal(data, &doc); err != nil {
			return
		}
		w.mu.Lock()
		if doc.Version > t.version && t.version > 0 {
			t.unknownAfterAck = true // the unknown write did commit
		}
		t.version, t.hostnames, t.labels = doc.Version, doc.Hostnames, doc.Labels
		t.live, t.uncertain = true, false
		if n, err := strconv.Atoi(doc.Labels["seq"]); err == nil && n > t.seq {
			t.seq = n
		}
		w.updateHostsLocked()
		w.mu.Unlock()
	case http.StatusNotFound:
		w.mu.Lock()
		if t.version > 0 {
			t.unknownAfterAck = true // deleted by a write with an unknown outcome
			t.deleted = true
		}
		t.live, t.uncertain = false, false
		w.updateHostsLocked()
		w.mu.Unlock()
	}
}

func (w *Writer) updateHostsLocked() {
	var hosts []string
	deleted := 0
	for i := len(w.order) - 1; i >= 0; i-- {
		t := w.tenants[w.order[i]]
		switch {
		case t.live:
			hosts = append(hosts, t.hostnames...)
		case t.deleted && deleted < 20:
			deleted++
			hosts = append(hosts, primaryHost(t.id))
		}
	}
	w.hosts = hosts
}

// Catalog reads every tenant the catalog holds, tombstones included
// (GET /v1/admin/export).
func Catalog(ctx context.Context, base string) (map[string]*tenant.Tenant, error) {
	out := map[string]*tenant.Tenant{}
	token := ""
	for {
		url := base + "/v1/admin/export?page_size=500"
		if token != "" {
			url += "&page_token=" + token
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+ReaderToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		var page struct {
			Items []struct {
				Tenant *tenant.Tenant `json:"tenant"`
			} `json:"items"`
			Next string `json:"next_page_token"`
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("export: %s %s", res.Status, strings.TrimSpace(string(data)))
		}
		if err := json.Unmarshal(data, &page); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		for _, it := range page.Items {
			if it.Tenant != nil {
				out[it.Tenant.ID] = it.Tenant
			}
		}
		if page.Next == "" {
			return out, nil
		}
		token = page.Next
	}
}
