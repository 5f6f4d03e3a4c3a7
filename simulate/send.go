package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Options of a run.
type Options struct {
	URL   string
	Token string
	// Rate is the target events per second; 0 sends as fast as the exporter takes them.
	Rate float64
	// Events stops after this many distinct events; 0 means no limit.
	Events int
	// Duration stops after this long; 0 means no limit.
	Duration time.Duration
	// Backfill spreads event times over the last Backfill instead of now (at most 35 days).
	Backfill    time.Duration
	Batch       int
	Concurrency int
	// RetryRatio is the share of batches sent twice, as a client retrying after a timeout would.
	RetryRatio float64
	// Seasonal scales Rate with the time of day and week (Seasonality).
	Seasonal bool
	Log      *slog.Logger
}

// Stats of a run.
type Stats struct {
	Sent, Accepted, Duplicates, Requests int64
	// Resent counts the events of the batches resent on purpose (RetryRatio): their duplicates
	// are expected. Duplicates beyond them were stored before this run (the same seed again).
	Resent  int64
	Elapsed time.Duration
}

type batch struct {
	body   []byte
	events [][]byte
	retry  bool
}

// Run generates and sends events until a limit or ctx ends it. Every batch is retried until the
// exporter acknowledges it, so the totals are exact even across exporter restarts.
func Run(ctx context.Context, g *Generator, totals *Totals, o Options) (Stats, error) {
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	client := &http.Client{Timeout: 60 * time.Second}
	var st Stats
	var mu sync.Mutex
	start := time.Now()
	batches := make(chan batch, o.Concurrency*2)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				res, err := postUntilAcked(ctx, client, o, b.body)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				atomic.AddInt64(&st.Requests, 1)
				atomic.AddInt64(&st.Accepted, int64(res.Accepted))
				atomic.AddInt64(&st.Duplicates, int64(res.Duplicates))
				if b.retry {
					atomic.AddInt64(&st.Resent, int64(len(b.events)))
				}
				if totals != nil && !b.retry {
					mu.Lock()
					for _, e := range b.events {
						_ = totals.Add(e)
					}
					mu.Unlock()
				}
			}
		}()
	}
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	var sent int
	interval := time.Duration(0)
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.Batch) / o.Rate)
	}
	next := time.Now()
	var last *batch
produce:
	for o.Events == 0 || sent < o.Events {
		n := o.Batch
		if o.Events > 0 && o.Events-sent < n {
			n = o.Events - sent
		}
		b := batch{body: make([]byte, 0, n*300), events: make([][]byte, 0, n)}
		now := time.Now()
		for range n {
			at := now
			if o.Backfill > 0 {
				at = g.backfillTime(now, o.Backfill)
			}
			s := len(b.body)
			b.body = g.Next(b.body, at)
			b.events = append(b.events, b.body[s:len(b.body):len(b.body)])
			b.body = append(b.body, '\n')
		}
		sent += n
		st.Sent += int64(n)
		select {
		case batches <- b:
		case <-ctx.Done():
			break produce
		}
		if last != nil && o.RetryRatio > 0 && g.rng.Float64() < o.RetryRatio {
			retry := *last
			retry.retry = true
			select {
			case batches <- retry:
			case <-ctx.Done():
				break produce
			}
		}
		last = &b
		if interval > 0 {
			step := interval
			if o.Seasonal {
				step = time.Duration(float64(interval) / Seasonality(time.Now()))
			}
			next = next.Add(step)
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					break produce
				}
			} else if d < -5*time.Second {
				next = time.Now() // far behind: do not burst to catch up
			}
		}
		select {
		case <-progress.C:
			o.Log.Info("simulating", "sent", st.Sent, "accepted", atomic.LoadInt64(&st.Accepted),
				"duplicates", atomic.LoadInt64(&st.Duplicates), "events_per_second", int(float64(st.Sent)/time.Since(start).Seconds()))
		default:
		}
	}
	close(batches)
	wg.Wait()
	st.Elapsed = time.Since(start)
	if st.Duplicates > st.Resent {
		o.Log.Warn("events already stored before this run were acknowledged and not counted again: the exporter holds an earlier run with the same --seed (the same event ids); give another --seed to send new events",
			"already_stored", st.Duplicates-st.Resent, "seed_source", g.source)
	}
	if err, _ := firstErr.Load().(error); err != nil && ctx.Err() == nil {
		return st, err
	}
	return st, nil
}

// backfillTime draws a time in [now-span, now) following the seasonality.
func (g *Generator) backfillTime(now time.Time, span time.Duration) time.Time {
	for {
		at := now.Add(-time.Duration(g.rng.Int64N(int64(span))))
		if g.rng.Float64()*1.6 < Seasonality(at) {
			return at
		}
	}
}

type ack struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

// postUntilAcked posts a batch until the exporter acknowledges it. Connection errors, 5xx and 429
// (the credential's limit of requests in flight) are retried (the request is idempotent); any
// other 4xx is a bug in the generator and is returned.
func postUntilAcked(ctx context.Context, client *http.Client, o Options, body []byte) (ack, error) {
	backoff := 100 * time.Millisecond
	for {
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, o.URL+"/v1/events", bytes.NewReader(body))
		if err != nil {
			return ack{}, err
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		if o.Token != "" {
			req.Header.Set("Authorization", "Bearer "+o.Token)
		}
		resp, err := client.Do(req)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusAccepted:
				var a ack
				if err := json.Unmarshal(data, &a); err != nil {
					return ack{}, fmt.Errorf("decoding acknowledgement: %w", err)
				}
				return a, nil
			case resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
				return ack{}, fmt.Errorf("exporter refused a batch: %s: %s", resp.Status, bytes.TrimSpace(data))
			}
			err = fmt.Errorf("exporter answered %s", resp.Status)
		}
		if ctx.Err() != nil {
			return ack{}, fmt.Errorf("batch not acknowledged before the run ended: %w", err)
		}
		o.Log.Warn("batch not acknowledged; retrying", "err", err, "backoff", backoff)
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}
