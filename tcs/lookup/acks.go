package lookup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tcs-dev/tcs/catalog/tenant"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Acknowledgements (issue 13). Every broadcast takes the next number of the
// node's sequence (Server.seq), shared by every Watch stream, and a Resync
// takes the number of the last broadcast it covers; a client acks the
// number of the last message it applied (AckStream), and the node keeps the
// highest per stream. Per tenant the node remembers, in an LRU of
// DefaultAckTenants tenants (Config.AckTenants), the version and number of
// the last invalidation it broadcast. So a stream whose ack reaches the
// number of T's invalidation at version V has applied it (or a Resync after
// it, which covers it).
//
// A tenant that fell out of the LRU was last invalidated at a number no
// higher than the highest number evicted (ackState.floor): a stream acked
// that far has applied its last invalidation. A tenant that was never
// invalidated since the node started is covered by each stream's first
// Resync. What neither rule sees is an invalidation the node's feed never
// delivered (a lost feed message): the node's own cached_version still
// shows it, and the clients' TTL bounds it.

// Defaults of the acknowledgement settings.
const (
	// DefaultAckTenants is Config.AckTenants' default.
	DefaultAckTenants = 100_000
	// DefaultAckGrace is Config.AckGrace's default.
	DefaultAckGrace = 5 * time.Second
)

// sent is the last invalidation of a tenant the node broadcast.
type sent struct {
	version   int64
	seq       uint64
	hostnames []string
}

// ackState is the node's side of acknowledgements. Server.mu guards it,
// except sessions (a sync.Map: AckStream never takes Server.mu).
type ackState struct {
	seq   uint64 // the number of the last broadcast; starts at 1
	sent  *simplelru.LRU[string, sent]
	floor uint64 // the highest seq evicted from sent
	grace time.Duration
	// waited holds the tenants someone asked the status of within
	// waitedFor (unix nanoseconds when that ends): their invalidations go
	// out with ack_now, so that clients ack them as they apply them.
	waited map[string]int64
}

// waitedFor is how long after a TenantStatus call the node asks clients to
// ack the tenant's invalidations at once: a wait polls far more often (at
// most every 50 ms), and every ack so asked costs the node about a lookup,
// so the mark ends soon after the wait. maxWaited bounds how many tenants
// it remembers so (past it, expired ones are dropped, then new ones not
// added: their waits take one more status poll).
const (
	waitedFor = time.Second
	maxWaited = 10_000
)

func (a *ackState) init(cfg Config) {
	n := cfg.AckTenants
	if n <= 0 {
		n = DefaultAckTenants
	}
	a.seq = 1
	a.grace = cfg.AckGrace
	if a.grace <= 0 {
		a.grace = DefaultAckGrace
	}
	a.sent, _ = simplelru.NewLRU(n, func(_ string, v sent) { a.floor = max(a.floor, v.seq) })
	a.waited = map[string]int64{}
}

// waitLocked records that someone waits for tenantID's changes at now (unix
// nanoseconds). Server.mu must be held.
func (a *ackState) waitLocked(tenantID string, now int64) {
	if _, ok := a.waited[tenantID]; !ok && len(a.waited) >= maxWaited {
		for id, until := range a.waited {
			if until <= now {
				delete(a.waited, id)
			}
		}
		if len(a.waited) >= maxWaited {
			return
		}
	}
	a.waited[tenantID] = now + int64(waitedFor)
}

// nextSeqLocked numbers a broadcast of msg, and remembers it if it is an
// invalidation, which it marks ack_now if someone waits for its tenant (now
// is the time, unix nanoseconds). Server.mu must be held.
func (a *ackState) nextSeqLocked(msg *tcsv1.WatchResponse, now int64) {
	a.seq++
	msg.Seq = a.seq
	inv := msg.GetInvalidation()
	if inv == nil {
		return
	}
	if until, ok := a.waited[inv.GetTenantId()]; ok {
		if until > now {
			msg.AckNow = true
		} else {
			delete(a.waited, inv.GetTenantId())
		}
	}
	// An invalidation no newer than the one remembered (a redelivery)
	// leaves it: streams that acked the first have what it says.
	if last, ok := a.sent.Get(inv.GetTenantId()); ok && last.version >= inv.GetVersion() {
		return
	}
	a.sent.Add(inv.GetTenantId(), sent{version: inv.GetVersion(), seq: a.seq, hostnames: inv.GetHostnames()})
}

// newSessionID returns a random session id: 128 bits, so that nobody can
// ack another's stream by guessing.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// resyncLocked returns the Resync for w, numbered as the last broadcast.
// Server.mu must be held.
func (s *Server) resyncLocked(w *watcher) *tcsv1.WatchResponse {
	return &tcsv1.WatchResponse{
		Kind: &tcsv1.WatchResponse_Resync{Resync: &tcsv1.Resync{SessionId: w.session}},
		Seq:  s.acks.seq,
	}
}

// AckAcceptedHeader is the header AckStream sends ("true") once it accepted
// the session of the stream's first AckRequest, so that a client can tell
// at once that it reached the Watch stream's node.
const AckAcceptedHeader = "tcs-ack-accepted"

// AckStream implements TenantContextService.AckStream: each AckRequest
// records that the client of its session has applied every message up to
// seq. The first names the session (unknown: NOT_FOUND; one with an
// AckStream open already: ALREADY_EXISTS); the others must name the same
// (else INVALID_ARGUMENT). The stream ends with NOT_FOUND once the session's
// Watch stream has ended, and otherwise only when the client ends it. An
// ack is an atomic maximum on the session's watcher: it takes no lock that
// lookups or broadcasts take.
func (s *Server) AckStream(stream grpc.ClientStreamingServer[tcsv1.AckRequest, tcsv1.AckResponse]) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	v, ok := s.sessions.Load(req.GetSessionId())
	if !ok {
		s.m.ackStreams[ackStreamUnknown].Inc()
		return status.Error(codes.NotFound, "session_id: no Watch stream of this node has that session (it ended, or is another node's): ack the session of your current stream, on its node")
	}
	w := v.(*watcher)
	if !w.acking.CompareAndSwap(false, true) {
		s.m.ackStreams[ackStreamDuplicate].Inc()
		return status.Error(codes.AlreadyExists, "session_id: this Watch stream has an AckStream open already: one per Watch stream")
	}
	defer w.acking.Store(false)
	if err := stream.SendHeader(metadata.Pairs(AckAcceptedHeader, "true")); err != nil {
		return err
	}
	s.m.ackStreams[ackStreamOpened].Inc()
	session := req.GetSessionId()

	// Recv blocks until the client sends or the stream ends; a goroutine
	// receives so that the end of the Watch stream ends this one too.
	errc := make(chan error, 1)
	go func() {
		for {
			w.ack(req.GetSeq())
			s.m.acks.Inc()
			var err error
			if req, err = stream.Recv(); err != nil {
				errc <- err
				return
			}
			if req.GetSessionId() != session {
				errc <- status.Error(codes.InvalidArgument, "session_id: every AckRequest of an AckStream must name the session of its first")
				return
			}
		}
	}()
	select {
	case err := <-errc:
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&tcsv1.AckResponse{}) // the client closed it
		}
		return err
	case <-w.done:
		return status.Error(codes.NotFound, "session_id: its Watch stream ended: ack the session of your next stream")
	}
}

// ack records that w's client has applied every message up to seq.
func (w *watcher) ack(seq uint64) {
	for {
		cur := w.acked.Load()
		if seq <= cur || w.acked.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// TenantStatus is how far one tenant's change has reached on a node: see
// TenantStatusResponse in proto/tcs/admin/v1/admin.proto, whose fields these
// are.
type TenantStatus struct {
	Region         string
	ReplicaVersion int64
	CachedVersion  int64
	CachedOther    bool
	FeedVersion    int64
	FeedUp         bool
	Served         bool
	Clients        ClientCounts
}

// ClientCounts counts a node's Watch clients by how far they have acked.
type ClientCounts struct {
	Acknowledged, Lagging, NotAcking int
}

// TenantStatus reports how far tenantID has reached version on this node:
// the replica's version (one read), the lowest version the cache holds
// fresh for its hostnames (those of the replica's document and of its last
// invalidation; probing them counts as cache hits), the feed, and the
// node's Watch clients by what they acked. version must be at least 1.
func (s *Server) TenantStatus(ctx context.Context, tenantID string, version int64) (TenantStatus, error) {
	st, err := s.tenantStatus(ctx, tenantID, version)
	switch {
	case err == nil:
		s.m.tenantStatus[tenantStatusOK].Inc()
	case tenant.ErrorCode(err) == tenant.Invalid:
		s.m.tenantStatus[tenantStatusInvalid].Inc()
	default:
		s.m.tenantStatus[tenantStatusError].Inc()
	}
	return st, err
}

func (s *Server) tenantStatus(ctx context.Context, tenantID string, version int64) (TenantStatus, error) {
	if version < 1 {
		return TenantStatus{}, &tenant.Error{Code: tenant.Invalid, Message: "invalid version",
			Fields: []tenant.FieldError{{Field: "version", Reason: "must be at least 1 (a version a catalog write returned)"}}}
	}
	if err := tenant.ValidateID(tenantID); err != nil {
		return TenantStatus{}, err
	}
	st := TenantStatus{Region: s.region}
	doc, err := s.replica.GetTenant(ctx, tenantID)
	switch {
	case err == nil:
		st.ReplicaVersion = doc.Version
	case tenant.ErrorCode(err) != tenant.NotFound:
		return TenantStatus{}, err
	}

	s.mu.Lock()
	s.acks.waitLocked(tenantID, time.Now().UnixNano())
	last, remembered := s.acks.sent.Peek(tenantID)
	need := max(s.acks.floor, 1)
	if remembered {
		need = last.seq
		if last.version < version {
			need = math.MaxUint64 // no invalidation that far broadcast yet
		}
	}
	st.FeedVersion = last.version
	st.FeedUp = !s.down
	ws := make([]*watcher, 0, len(s.watchers))
	for w := range s.watchers {
		ws = append(ws, w)
	}
	s.mu.Unlock()

	probe := func(h string, own bool) {
		res, ok := s.cache.Peek(h)
		switch {
		case !ok:
		case res.TenantID == tenantID:
			if st.CachedVersion == 0 || res.Version < st.CachedVersion {
				st.CachedVersion = res.Version
			}
		case own:
			st.CachedOther = true
		}
	}
	if doc != nil && doc.Status != tenant.StatusDeleted {
		for _, h := range doc.Hostnames {
			probe(h, true)
		}
	}
	for _, h := range last.hostnames {
		probe(h, false)
	}
	st.Served = st.ReplicaVersion >= version && !st.CachedOther &&
		(st.CachedVersion == 0 || st.CachedVersion >= version)
	if !remembered && !st.Served {
		// No invalidation of the tenant remembered, and the node itself
		// has not reached the version: its clients cannot have either
		// (without this they would count as acknowledged, depending on
		// whether the node happened to remember the tenant).
		need = math.MaxUint64
	}

	now := s.now().UnixNano()
	var ackNow *tcsv1.WatchResponse
	for _, w := range ws {
		switch acked := w.acked.Load(); {
		case acked >= need:
			st.Clients.Acknowledged++
		case acked == 0 && time.Duration(now-w.started) > s.acks.grace:
			st.Clients.NotAcking++
		default:
			st.Clients.Lagging++
			if need == math.MaxUint64 {
				continue // nothing it could ack yet
			}
			if ackNow == nil {
				ackNow = &tcsv1.WatchResponse{Kind: &tcsv1.WatchResponse_Heartbeat{Heartbeat: &tcsv1.Heartbeat{
					At: timestamppb.New(s.now()), Interval: durationpb.New(s.interval),
				}}, AckNow: true}
			}
			s.requestAck(w, need, ackNow)
		}
	}
	return st, nil
}

// ackRequestRepeat is how long a stream asked to ack seq at once is not
// asked again for seq or lower: a client that got the request before the
// invalidation it was for acks that invalidation at once when it comes, so
// one request per change is enough unless it was lost (a stream that fell
// behind drops it).
const ackRequestRepeat = time.Second

// requestAck queues msg (a Heartbeat with ack_now) for w, which has not
// acked need, unless w was asked for need or more within ackRequestRepeat,
// or its queue is full (it is behind: its Resync or its next ack will
// come).
func (s *Server) requestAck(w *watcher, need uint64, msg *tcsv1.WatchResponse) {
	now := time.Now().UnixNano()
	w.askMu.Lock()
	if w.askedFor >= need && now-w.askedAt < int64(ackRequestRepeat) {
		w.askMu.Unlock()
		return
	}
	w.askedFor, w.askedAt = need, now
	w.askMu.Unlock()
	select {
	case w.ch <- msg:
		s.m.ackRequests.Inc()
	default:
	}
}

// TenantStatus implements ReplicaAdmin.TenantStatus.
func (a *adminServer) TenantStatus(ctx context.Context, req *adminv1.TenantStatusRequest) (*adminv1.TenantStatusResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	st, err := a.s.TenantStatus(ctx, req.GetTenantId(), req.GetVersion())
	if err != nil {
		return nil, a.s.status(err).Err()
	}
	return &adminv1.TenantStatusResponse{
		Region:              st.Region,
		ReplicaVersion:      st.ReplicaVersion,
		CachedVersion:       st.CachedVersion,
		CachedOther:         st.CachedOther,
		FeedVersion:         st.FeedVersion,
		FeedUp:              st.FeedUp,
		Served:              st.Served,
		ClientsAcknowledged: int32(st.Clients.Acknowledged),
		ClientsLagging:      int32(st.Clients.Lagging),
		ClientsNotAcking:    int32(st.Clients.NotAcking),
	}, nil
}
