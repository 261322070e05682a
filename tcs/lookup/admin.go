package lookup

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
)

// MaxScanLimit caps ScanRequest.limit: a page of that many tenant documents
// stays well under a client's default 4 MB receive limit for documents of
// ordinary size.
const MaxScanLimit = 1000

// adminServer is tcs.admin.v1.ReplicaAdmin over the region's replica: reads
// straight from the table, never from the cache, for bearers of an admin
// token.
type adminServer struct {
	adminv1.UnimplementedReplicaAdminServer
	s       *Server
	scanner tcs.Scanner
	tokens  [][sha256.Size]byte
}

var _ adminv1.ReplicaAdminServer = (*adminServer)(nil)

func newAdminServer(s *Server, scanner tcs.Scanner, tokens []string) *adminServer {
	a := &adminServer{s: s, scanner: scanner}
	for _, t := range tokens {
		if t == "" {
			panic("lookup: Config.AdminTokens holds an empty token")
		}
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	return a
}

// Admin returns the ReplicaAdmin service, or nil when the server has no
// admin tokens or its replica is not a tcs.Scanner. Register registers it.
func (s *Server) Admin() adminv1.ReplicaAdminServer {
	if s.admin == nil {
		return nil
	}
	return s.admin
}

// authorize checks the call's "authorization: Bearer <token>" metadata
// against the admin tokens. It compares SHA-256 digests in constant time and
// looks at every token, so that timing leaks neither the token's length nor
// which one matched.
func (a *adminServer) authorize(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return status.Error(codes.Unauthenticated, "missing bearer token: send metadata authorization: Bearer <admin token>")
	}
	const prefix = "bearer "
	v := vals[0]
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return status.Error(codes.Unauthenticated, "missing bearer token: send metadata authorization: Bearer <admin token>")
	}
	sum := sha256.Sum256([]byte(v[len(prefix):]))
	ok := 0
	for _, t := range a.tokens {
		ok |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	if ok != 1 {
		a.s.log.Warn("replica admin call with an invalid token")
		return status.Error(codes.Unauthenticated, "invalid admin token")
	}
	return nil
}

func scanLimit(n int32) int {
	return int(min(n, MaxScanLimit))
}

// ScanDocs implements ReplicaAdmin.ScanDocs.
func (a *adminServer) ScanDocs(ctx context.Context, req *adminv1.ScanRequest) (*adminv1.ScanDocsResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	docs, next, err := a.scanner.ScanDocs(ctx, req.GetCursor(), scanLimit(req.GetLimit()))
	if err != nil {
		return nil, a.s.status(err).Err()
	}
	resp := &adminv1.ScanDocsResponse{Docs: make([]*tcsv1.Tenant, len(docs)), NextCursor: next, Region: a.s.region}
	for i, d := range docs {
		resp.Docs[i] = tcsv1.TenantToProto(d)
	}
	return resp, nil
}

// ScanHosts implements ReplicaAdmin.ScanHosts.
func (a *adminServer) ScanHosts(ctx context.Context, req *adminv1.ScanRequest) (*adminv1.ScanHostsResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	hosts, next, err := a.scanner.ScanHosts(ctx, req.GetCursor(), scanLimit(req.GetLimit()))
	if err != nil {
		return nil, a.s.status(err).Err()
	}
	resp := &adminv1.ScanHostsResponse{Hosts: make([]*adminv1.HostEntry, len(hosts)), NextCursor: next, Region: a.s.region}
	for i, h := range hosts {
		resp.Hosts[i] = &adminv1.HostEntry{Hostname: h.Hostname, TenantId: h.TenantID, ClaimVersion: h.ClaimVersion}
	}
	return resp, nil
}
