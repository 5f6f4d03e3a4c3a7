package server

import (
	"bytes"
	"fmt"
	"net/http"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
)

// problemFallback answers what the mux has no route for (404, and 405 with its Allow header) as
// problem+json, like every other error of the API, instead of the mux's plain text.
func problemFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusNotFound:
			problem.Write(w, problem.Details{Status: http.StatusNotFound,
				Detail: fmt.Sprintf("no endpoint at %s (the API's endpoints are listed at /)", r.URL.Path)})
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			problem.Write(w, problem.Details{Status: http.StatusMethodNotAllowed,
				Detail: fmt.Sprintf("%s does not take %s (allowed: %s)", r.URL.Path, r.Method, rec.header.Get("Allow"))})
		default: // a redirect (a missing trailing slash): as the mux says
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body.Bytes())
		}
	})
}

// recorder keeps the mux's fallback answer (a few bytes) to rewrite it.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
