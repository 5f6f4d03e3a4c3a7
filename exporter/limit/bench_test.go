package limit

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkRequestLimits is the cost the limits add to a request: the overall slot and a
// caller's slot, taken and given back, by parallel requests from 64 callers.
func BenchmarkRequestLimits(b *testing.B) {
	q := NewRequests(1<<20, 1<<20, NewMetrics(quiet))
	var n atomic.Int64
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, ok := q.Acquire(w, "token:"+strconv.Itoa(int(n.Add(1)%64)))
		if ok {
			release()
		}
	})
	h := q.Handler(inner, nil)
	req := httptest.NewRequest("GET", "/v1/usage", nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := httptest.NewRecorder()
		for pb.Next() {
			h.ServeHTTP(w, req)
		}
	})
}
