package httpapi

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestOpenAPIMatchesRoutes: openapi.json is a valid OpenAPI 3 document and
// documents exactly the operations the server routes, no more, no fewer.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc, _ := loadSpec(t)
	var inSpec, inServer []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec = append(inSpec, strings.ToUpper(method)+" "+path)
		}
	}
	for _, rt := range routes {
		inServer = append(inServer, rt.Method+" "+rt.SpecPath)
	}
	sort.Strings(inSpec)
	sort.Strings(inServer)
	if diff := cmp.Diff(inSpec, inServer); diff != "" {
		t.Errorf("openapi.json (-) and server routes (+) differ:\n%s", diff)
	}

	// Every route is really served: a request to it is not answered by the
	// mux's own 404 or 405.
	h := newHarness(t)
	for _, rt := range routes {
		path := strings.NewReplacer("{id}", "alpha", "{product}", "jira", "{hostname}", "alpha.example.com").Replace(rt.SpecPath)
		res := h.do(call{method: rt.Method, path: path, token: adminToken})
		if res.status == http.StatusMethodNotAllowed || (res.status == http.StatusNotFound && strings.Contains(string(res.body), "route_not_found")) {
			t.Errorf("%s %s is in the spec but not routed (%d)", rt.Method, path, res.status)
		}
	}
}
