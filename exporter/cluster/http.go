package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
)

// Read-your-writes. A 202 answer carries the log position of the write (X-Usagemeter-Seq and
// the body's "seq"); a read may ask to reflect at least a position, with the header
// X-Usagemeter-Min-Seq or the query parameter min_seq, and waits for this replica to apply it,
// at most ReadWait. Every answer carries X-Usagemeter-Applied-Seq: the position the replica had
// applied when it started answering (what it reflects at least).
const (
	HeaderMinSeq     = "X-Usagemeter-Min-Seq"
	HeaderAppliedSeq = "X-Usagemeter-Applied-Seq"
	paramMinSeq      = "min_seq"
)

// Middleware makes next answer reads no older than the position they ask for.
func (n *Node) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.route(w, r) {
			return
		}
		want, err := minSeq(r)
		if err != nil {
			problem.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		if want > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), n.opts.ReadWait)
			err := n.mark.wait(ctx, want)
			cancel()
			if err != nil {
				applied := n.Applied()
				w.Header().Set(HeaderAppliedSeq, strconv.FormatUint(applied, 10))
				w.Header().Set("Retry-After", "1")
				detail := fmt.Sprintf("this replica has applied the log up to %d, not yet %d; retry, or read from another replica", applied, want)
				if ferr := n.Err(); ferr != nil {
					detail = ferr.Error()
				} else if errors.Is(err, context.Canceled) {
					return // the client went away
				}
				problem.Write(w, problem.Details{Type: "https://usagemeter.dev/problems/sequence-not-reached",
					Title: "Log position not reached", Status: http.StatusServiceUnavailable, Detail: detail})
				return
			}
		}
		// The handlers validate their own parameters: they do not know min_seq.
		if q := r.URL.Query(); q.Has(paramMinSeq) {
			q.Del(paramMinSeq)
			r = r.Clone(r.Context())
			r.URL.RawQuery = q.Encode()
		}
		w.Header().Set(HeaderAppliedSeq, strconv.FormatUint(n.Applied(), 10))
		next.ServeHTTP(w, r)
	})
}

func minSeq(r *http.Request) (uint64, error) {
	h := r.Header.Get(HeaderMinSeq)
	q := r.URL.Query().Get(paramMinSeq)
	if h == "" && q == "" {
		return 0, nil
	}
	parse := func(name, v string) (uint64, error) {
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: want a log position (a non-negative integer), got %q", name, v)
		}
		return n, nil
	}
	a, err := parse(HeaderMinSeq, h)
	if err != nil {
		return 0, err
	}
	b, err := parse(paramMinSeq, q)
	if err != nil {
		return 0, err
	}
	return max(a, b), nil
}
