package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
)

const (
	// HeaderPartitions on every answer: the partitions this replica owns, of how many ("0,2/4").
	// An answer that covers all tenants (a list, /metrics) covers only these.
	HeaderPartitions = "X-Usagemeter-Partitions"
	// HeaderForwarded marks a request one replica forwarded to another: it is not forwarded again.
	HeaderForwarded = "X-Usagemeter-Forwarded"
)

// route sends a tenant-scoped request for a tenant of another partition to a replica owning it.
// It reports whether it answered. Ingest is not forwarded: any replica publishes any event.
func (n *Node) route(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set(HeaderPartitions, n.parts.describe())
	if n.parts.ownsAll() {
		return false
	}
	tenant := requestTenant(r)
	if tenant == "" || n.parts.owns(tenant) {
		return false
	}
	part := n.parts.of(tenant)
	peers := n.parts.peers[part]
	if r.Header.Get(HeaderForwarded) != "" || len(peers) == 0 {
		problem.Write(w, problem.Details{Type: "https://usagemeter.dev/problems/wrong-partition", Title: "Tenant not served here",
			Status: http.StatusMisdirectedRequest,
			Detail: fmt.Sprintf("tenant %q is in partition %d of %d; this replica serves partitions %s: send the request to a replica that owns it", tenant, part, n.parts.n, n.parts.describe())})
		return true
	}
	target := peers[0]
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(HeaderForwarded, n.parts.describe())
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			w.Header().Set("Retry-After", "1")
			problem.Error(w, http.StatusBadGateway, fmt.Sprintf("forwarding to %s, which owns partition %d of tenant %q: %v", target, part, tenant, err))
		},
	}
	proxy.ServeHTTP(w, r)
	return true
}

// requestTenant finds the tenant a request is about: the tenant parameter, a /tenants/{tenant}/
// path, or the body of a quota check. "" for requests about no single tenant.
func requestTenant(r *http.Request) string {
	if t := r.URL.Query().Get("tenant"); t != "" {
		return t
	}
	for _, prefix := range []string{"/v1/tenants/", "/v1/analytics/tenants/"} {
		if rest, ok := strings.CutPrefix(r.URL.Path, prefix); ok {
			t, _, _ := strings.Cut(rest, "/")
			return t
		}
	}
	if r.Method == http.MethodPost && r.URL.Path == "/v1/quota/check" && r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		r.Body = io.NopCloser(bytes.NewReader(b)) // the handler (or the peer) reads it again
		if err != nil {
			return ""
		}
		var q struct {
			Tenant string `json:"tenant"`
		}
		_ = json.Unmarshal(b, &q)
		return q.Tenant
	}
	return ""
}
