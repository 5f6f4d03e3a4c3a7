package limit

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
)

// RetryAfter is the Retry-After, in seconds, of a request refused by a limit: slots free as
// soon as requests finish, so a short wait is enough.
const RetryAfter = 1

// Requests bounds the requests served at once: overall (Handler, 503) and per caller
// (Acquire, 429). A refused request is answered at once; none waits for a slot.
type Requests struct {
	max, perCaller int
	m              *Metrics
	inFlight       atomic.Int64

	mu      sync.Mutex
	callers map[string]int // requests in flight per caller key; absent when none
}

// NewRequests returns limits of max requests in flight overall and perCaller per caller.
func NewRequests(max, perCaller int, m *Metrics) *Requests {
	q := &Requests{max: max, perCaller: perCaller, m: m, callers: map[string]int{}}
	m.limits.WithLabelValues(RequestsInFlight).Set(float64(max))
	m.limits.WithLabelValues(RequestsInFlightPerCaller).Set(float64(perCaller))
	m.add(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "usage_exporter_http_requests_in_flight",
		Help: "HTTP requests being served (at most http.max_requests_in_flight; health probes are not counted).",
	}, func() float64 { return float64(q.inFlight.Load()) }))
	m.add(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "usage_exporter_http_callers_in_flight",
		Help: "Distinct callers (credentials, or remote IPs without one) with requests being served.",
	}, func() float64 {
		q.mu.Lock()
		defer q.mu.Unlock()
		return float64(len(q.callers))
	}))
	return q
}

// Handler serves next within the overall limit; requests for which exempt is true (health
// probes: a liveness probe refused under load would get the process restarted) are not counted.
func (q *Requests) Handler(next http.Handler, exempt func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt != nil && exempt(r) {
			next.ServeHTTP(w, r)
			return
		}
		if q.inFlight.Add(1) > int64(q.max) {
			q.inFlight.Add(-1)
			q.m.reject(RequestsInFlight, q.max)
			refuse(w, http.StatusServiceUnavailable, fmt.Sprintf("the exporter is serving its maximum of %d requests (http.max_requests_in_flight); retry after %d s", q.max, RetryAfter))
			return
		}
		defer q.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// Acquire takes one of caller's slots. When caller already has its maximum in flight, it
// answers 429 on w and returns ok false; otherwise the caller must call release once done.
func (q *Requests) Acquire(w http.ResponseWriter, caller string) (release func(), ok bool) {
	q.mu.Lock()
	n := q.callers[caller]
	if n >= q.perCaller {
		q.mu.Unlock()
		q.m.reject(RequestsInFlightPerCaller, q.perCaller)
		refuse(w, http.StatusTooManyRequests, fmt.Sprintf("this credential (or address) already has %d requests in flight (http.max_requests_in_flight_per_credential); retry after %d s", q.perCaller, RetryAfter))
		return nil, false
	}
	q.callers[caller] = n + 1
	q.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			if q.callers[caller] <= 1 {
				delete(q.callers, caller) // the map holds only callers with requests in flight
			} else {
				q.callers[caller]--
			}
		})
	}, true
}

// RemoteIP is the caller key of a request without a valid credential: the TCP peer address
// (a forwarded-for header is the client's to write, so it is not trusted).
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

func refuse(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	problem.Error(w, status, detail)
}

// WriteDeadline gives h's responses d to be written instead of the server's write timeout:
// streamed exports legitimately take longer than ordinary answers.
func WriteDeadline(d time.Duration, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// A writer that cannot take deadlines (a test recorder) keeps whatever it has.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
		h(w, r)
	}
}
