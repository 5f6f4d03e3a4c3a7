// Package cluster runs a usage-exporter as one replica of a cluster: the ledger becomes a state
// machine over one replicated log, a NATS JetStream stream (R3, file storage). Ingest publishes
// each request as one message and acknowledges once a quorum of NATS servers holds it; every
// replica applies the log in order to its own Pebble ledger, recording the last applied position
// in the same batch as the events, so all replicas converge to the same totals byte for byte.
// Reads may ask for a minimum log position to read their own writes. docs/cluster.md has the
// design and the durability reasoning.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagemeter/usagemeter/exporter/commit"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// metaPartitions is the stream metadata key holding the number of tenant partitions.
const metaPartitions = "usagemeter_partitions"

// ErrBehindRetention means the log no longer holds the messages this replica needs next: it
// must be restored from a backup of another replica (docs/cluster.md) instead of skipping them.
var ErrBehindRetention = errors.New("this replica is behind the log's retention")

// Node is this exporter's membership in the cluster: the publisher of its ingests and the
// applier of the log to its ledger.
type Node struct {
	opts  Options
	log   *slog.Logger
	store *ledger.Store
	dec   *event.Decoder
	nc    *nats.Conn
	js    jetstream.JetStream
	parts *partitions

	mark    watermark
	results results
	fatal   atomic.Pointer[error]
	pending atomic.Uint64 // messages of the log after the last one read (the applier's backlog)

	cancel context.CancelFunc
	done   chan struct{}

	publishSeconds prometheus.Histogram
	publishErrors  prometheus.Counter
	applyErrors    prometheus.Counter
	appliedDesc    *prometheus.Desc
	pendingDesc    *prometheus.Desc
}

// Start connects to NATS, makes sure the stream exists with the configured replication, and
// starts applying the log to store from the position the store last recorded.
func Start(ctx context.Context, opts Options, store *ledger.Store, logger *slog.Logger) (*Node, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	parts, err := parsePartitions(opts)
	if err != nil {
		return nil, err
	}
	n := &Node{
		parts: parts,
		opts:  opts,
		log:   logger,
		store: store,
		dec:   &event.Decoder{Custom: meter.CustomEventTypes(store.Meters())},
		done:  make(chan struct{}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "usage_exporter_cluster_publish_duration_seconds",
			Help:    "Time from publishing an ingest request to the log until a quorum acknowledged it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "usage_exporter_cluster_publish_errors_total",
			Help: "Ingest requests the log did not acknowledge in time (answered 503, nothing acknowledged)."}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "usage_exporter_cluster_apply_restarts_total",
			Help: "Times the applier stopped on an error and resumed from the last committed log position."}),
		appliedDesc: prometheus.NewDesc("usage_exporter_cluster_applied_sequence",
			"Last log position this replica's ledger has committed.", []string{"stream"}, nil),
		pendingDesc: prometheus.NewDesc("usage_exporter_cluster_pending_messages",
			"Messages of the log after the last one this replica read: its backlog, as of that message.", []string{"stream"}, nil),
	}
	n.mark.init()
	applied, err := store.Applied(opts.Stream)
	if err != nil {
		return nil, err
	}
	n.mark.advance(applied)

	nc, err := nats.Connect(opts.NATSURL,
		nats.Name("usage-exporter"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("reconnected to NATS", "server", c.ConnectedUrl()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", opts.NATSURL, err)
	}
	n.nc = nc
	if n.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := n.ensureStream(sctx); err != nil {
		nc.Close()
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	n.cancel = stop
	go func() {
		defer close(n.done)
		n.run(runCtx)
	}()
	logger.Info("cluster mode", "nats", opts.NATSURL, "stream", opts.Stream, "replicas", opts.Replicas, "applied", applied)
	return n, nil
}

// ensureStream creates the stream, or updates it to the configured settings, retrying while the
// NATS cluster elects its meta leader.
func (n *Node) ensureStream(ctx context.Context) error {
	want := strconv.Itoa(n.parts.n)
	cfg := jetstream.StreamConfig{
		Metadata:    map[string]string{metaPartitions: want},
		Name:        n.opts.Stream,
		Description: "usagemeter ledger log: every write that changes the ledger (docs/cluster.md)",
		Subjects:    []string{n.opts.Subject + ".events.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    n.opts.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      n.opts.MaxAge,
		Duplicates:  n.opts.DuplicateWindow,
	}
	if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
		cfg.Duplicates = cfg.MaxAge // JetStream refuses a window longer than the retention
	}
	var last error
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		// Each attempt on its own deadline: a request sent before the meta leader is elected
		// gets no answer at all.
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		// The partition count is the stream's: replicas hashing tenants differently would apply
		// each other's tenants. A stream made before partitions has one.
		if s, err := n.js.Stream(actx, cfg.Name); err == nil {
			got := s.CachedInfo().Config.Metadata[metaPartitions]
			if got == "" {
				got = "1"
			}
			if got != want {
				cancel()
				return fmt.Errorf("stream %s has %s tenant partitions, this replica is configured with %s (--cluster.partitions)", cfg.Name, got, want)
			}
		}
		_, err := n.js.CreateOrUpdateStream(actx, cfg)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		n.log.Info("waiting for the NATS cluster to hold the stream", "stream", cfg.Name, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("creating stream %s (R%d, file storage) on %s: %w", cfg.Name, cfg.Replicas, n.opts.NATSURL, last)
		case <-time.After(wait):
		}
	}
}

// Close stops applying (what was submitted to the ledger is committed first) and disconnects.
func (n *Node) Close() {
	n.cancel()
	<-n.done
	n.nc.Close()
}

// Applied is the last log position this replica's ledger has committed.
func (n *Node) Applied() uint64 { return n.mark.get() }

// Err is the error that stopped the applier for good (ErrBehindRetention), or nil.
func (n *Node) Err() error {
	if p := n.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Commit publishes a request's events to the log as one message and returns once a quorum of
// NATS servers acknowledged it, then waits (at most ApplyTimeout) for this replica to apply it,
// to tell new events from duplicates.
func (n *Node) Commit(ctx context.Context, events []event.Event) (commit.Outcome, error) {
	if err := n.Err(); err != nil {
		return commit.Outcome{}, errors.Join(commit.ErrUnavailable, err)
	}
	subject, applied := n.parts.subject(n.opts.Subject, events)
	ack, err := n.publish(ctx, subject, events)
	if errors.Is(err, commit.ErrTooLarge) {
		return commit.Outcome{}, err
	}
	if err != nil {
		n.publishErrors.Inc()
		return commit.Outcome{}, errors.Join(commit.ErrUnavailable, err)
	}
	out := commit.Outcome{Seq: ack.Sequence}
	if !applied {
		// Other replicas own (some of) these tenants: the events are durable in the log, but
		// this one does not apply them all, so it cannot split them into new and duplicates.
		out.Unapplied = true
		out.Accepted = len(events)
		return out, nil
	}
	wctx, cancel := context.WithTimeout(ctx, n.opts.ApplyTimeout)
	defer cancel()
	if err := n.mark.wait(wctx, ack.Sequence); err != nil {
		out.Unapplied = true
		out.Accepted = len(events)
		return out, nil
	}
	if ack.Duplicate {
		// The same events, by (source, id), are in the log already, at ack.Sequence.
		out.Duplicates = len(events)
		return out, nil
	}
	res, ok := n.results.get(ack.Sequence)
	if !ok {
		out.Unapplied = true // applied long ago (a replay); the split is no longer kept
		out.Accepted = len(events)
		return out, nil
	}
	out.Result = res
	return out, nil
}

// publish sends the message and waits for the quorum's acknowledgement, retrying within
// PublishTimeout: while a stream leader is elected publishes time out or find no responder.
// A retry is safe: the message id and, beyond its window, the ledger's dedupe drop a copy.
func (n *Node) publish(ctx context.Context, subject string, events []event.Event) (*jetstream.PubAck, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, n.opts.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: subject, Data: encodeEvents(events), Header: nats.Header{}}
	if limit := n.nc.MaxPayload(); limit > 0 && int64(len(msg.Data))+1024 > limit {
		return nil, fmt.Errorf("%w: %d events make a log message of %d bytes, the NATS servers take at most %d (max_payload)",
			commit.ErrTooLarge, len(events), len(msg.Data), limit)
	}
	msg.Header.Set(headerFormat, "1")
	id := msgID(events)
	var last error
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := n.js.PublishMsg(actx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(n.opts.Stream))
		acancel()
		if err == nil {
			n.publishSeconds.Observe(time.Since(start).Seconds())
			return ack, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("publishing %d events to stream %s: %w", len(events), n.opts.Stream, last)
		case <-time.After(wait):
		}
	}
}

// run applies the log until ctx is done. After an error it resumes from the last position the
// ledger committed: what was applied twice is dropped by the ledger's dedupe.
func (n *Node) run(ctx context.Context) {
	for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 5*time.Second) {
		err := n.apply(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrBehindRetention) {
			n.fatal.Store(&err)
			n.log.Error("the replica stopped applying the log: restore it from a backup of another replica (docs/cluster.md)", "err", err)
			return
		}
		n.applyErrors.Inc()
		n.log.Warn("applying the log stopped; resuming from the last committed position", "err", err, "applied", n.Applied())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

type inflight struct {
	seq uint64
	p   ledger.Pending
}

// apply reads the log from the position after the last committed one and submits each message
// to the ledger in order, without waiting for each commit: consecutive messages share group
// commits. A second goroutine waits for the commits in order and advances the watermark.
func (n *Node) apply(ctx context.Context) error {
	from, err := n.store.Applied(n.opts.Stream)
	if err != nil {
		return err
	}
	n.mark.advance(from)
	info, err := n.stream(ctx)
	if err != nil {
		return err
	}
	// FirstSeq is the oldest message held; past the last one when retention removed them all.
	if st := info.State; st.FirstSeq > from+1 {
		return fmt.Errorf("%w: it applied the log up to %d, the stream now starts at %d", ErrBehindRetention, from, st.FirstSeq)
	}
	cons, err := n.js.OrderedConsumer(ctx, n.opts.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: n.parts.filter(n.opts.Subject),
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from + 1,
	})
	if err != nil {
		return fmt.Errorf("ordered consumer from %d: %w", from+1, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("reading the log: %w", err)
	}
	actx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	queue := make(chan inflight, 8192)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for f := range queue {
			res, err := f.p.Wait()
			if err != nil {
				stop(fmt.Errorf("committing log position %d: %w", f.seq, err))
				// Drain: what was submitted after it is refused or committed; the persisted
				// mark says where to resume either way.
				for f := range queue {
					_, _ = f.p.Wait()
				}
				return
			}
			n.results.put(f.seq, res)
			n.mark.advance(f.seq)
		}
	}()
	defer func() {
		it.Stop()
		close(queue)
		wg.Wait()
	}()
	go func() {
		<-actx.Done()
		it.Stop() // unblocks Next
	}()
	last := from
	for {
		msg, err := it.Next()
		if err != nil {
			if cause := context.Cause(actx); cause != nil && !errors.Is(cause, context.Canceled) {
				return cause
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading the log after %d: %w", last, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("log message after %d: %w", last, err)
		}
		seq := meta.Sequence.Stream
		n.pending.Store(meta.NumPending)
		if seq <= last {
			continue // redelivered after a consumer reset
		}
		if seq != last+1 && n.parts.ownsAll() {
			// The ordered consumer skips what the stream no longer holds: retention removed
			// messages this replica never applied. Applying on would diverge. (A replica owning
			// some partitions sees gaps by design: the other partitions' messages.)
			return fmt.Errorf("%w: it applied the log up to %d, the next message held is %d", ErrBehindRetention, last, seq)
		}
		if f := msg.Headers().Get(headerFormat); f != "1" {
			return fmt.Errorf("log position %d: unknown format %q: is a newer exporter writing to this stream?", seq, f)
		}
		events, err := decodeEvents(n.dec, msg.Data())
		if err != nil {
			return fmt.Errorf("log position %d: %w", seq, err)
		}
		if strings.HasSuffix(msg.Subject(), "."+multiPartition) {
			events = n.parts.keep(events)
		}
		p, err := n.store.Submit(actx, events, ledger.Mark{Log: n.opts.Stream, Seq: seq})
		if err != nil {
			return fmt.Errorf("log position %d: %w", seq, err)
		}
		select {
		case queue <- inflight{seq: seq, p: p}:
		case <-actx.Done():
			_, _ = p.Wait()
			return context.Cause(actx)
		}
		last = seq
	}
}

// stream reads the stream's state, retrying while the cluster has no leader for it.
func (n *Node) stream(ctx context.Context) (*jetstream.StreamInfo, error) {
	s, err := n.js.Stream(ctx, n.opts.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", n.opts.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", n.opts.Stream, err)
	}
	return info, nil
}

// Describe implements prometheus.Collector.
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	n.publishSeconds.Describe(ch)
	n.publishErrors.Describe(ch)
	n.applyErrors.Describe(ch)
	ch <- n.appliedDesc
	ch <- n.pendingDesc
}

// Collect implements prometheus.Collector.
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	n.publishSeconds.Collect(ch)
	n.publishErrors.Collect(ch)
	n.applyErrors.Collect(ch)
	ch <- prometheus.MustNewConstMetric(n.appliedDesc, prometheus.GaugeValue, float64(n.Applied()), n.opts.Stream)
	ch <- prometheus.MustNewConstMetric(n.pendingDesc, prometheus.GaugeValue, float64(n.pending.Load()), n.opts.Stream)
}

// watermark is the last applied position, with a way to wait for a later one.
type watermark struct {
	mu      sync.Mutex
	seq     uint64
	changed chan struct{} // closed and replaced at each advance
}

func (w *watermark) init() { w.changed = make(chan struct{}) }

func (w *watermark) get() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

func (w *watermark) advance(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq > w.seq {
		w.seq = seq
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

func (w *watermark) wait(ctx context.Context, seq uint64) error {
	for {
		w.mu.Lock()
		cur, ch := w.seq, w.changed
		w.mu.Unlock()
		if cur >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// results keeps the outcome of the latest applied messages, for the ingests waiting on them.
type results struct {
	mu   sync.Mutex
	ring [1 << 14]struct {
		seq uint64
		res ledger.Result
	}
}

func (r *results) put(seq uint64, res ledger.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &r.ring[seq%uint64(len(r.ring))]
	e.seq, e.res = seq, res
}

func (r *results) get(seq uint64) (ledger.Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.ring[seq%uint64(len(r.ring))]
	return e.res, e.seq == seq
}
