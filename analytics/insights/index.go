package insights

// The insight index. Three detectors read raw events, because content hashes are not in the
// rollups: duplicate documents and idle data need every live document (the whole history of
// document events), duplicate ingest needs the hashed ingest jobs of the lookback; and the
// cheaper-model detector reads 30 days of AI token rollups of every tenant. Scanning all of that
// on every request took seconds for 1,000 tenants. The index keeps, per tenant:
//
//   - every live document's latest event (its key, size, and interned content hash and owner),
//     with the figures the detectors read (live count and bytes, duplicate groups by content
//     hash, live documents by owner) maintained as documents come and go;
//   - a tombstone (the key of its deletion) for each document deleted less than the late window
//     and a margin (36 to 37 days) before the frontier: older, no event can still be ordered
//     before the deletion, so the tombstone decides nothing and is dropped (pruneTombstones);
//   - the hashed ingest jobs of the lookback, by source and hash, in key order;
//   - the AI token usage of the lookback by feature, model and hour, as the rollups hold it.
//
// What it holds therefore grows with the live documents (about 140 bytes each, measured by
// BenchmarkIndexMemory) and the documents deleted in the last 37 days, not with every document
// event ever ingested; document events after the frontier (the last hour or two) are not held at
// all: they are in the store, and advance reads them when the frontier passes them.
//
// It is built by one scan, then advanced with the events committed since (ledger.Changes, handed
// each group commit by the ledger's writer), so a request applies only what is new. Late events (up to 35 days
// old) are exact by construction: a document's state is decided by its event with the greatest
// key, whenever that event arrives, and any event marks its tenant's hour of token usage to be
// read again. Follow keeps the index current in the background, so that requests find little to
// apply. A request for an instant before the index's frontier (or more than an hour ahead of the
// clock), or with another lookback, is answered by scanning, as before. A gap in the followed
// commits (the hook not wired, too many events between two updates) makes the index rebuild, and
// so does retention archiving or restoring a month.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Index keeps what the detectors read of raw events and AI token rollups up to date between
// calls to Detect. Share one between the engines of a store (Engine.Index).
type Index struct {
	Store *ledger.Store
	// Changes must be NewChanges(n, RawTypes()...) attached to
	// the store; without it the index cannot follow commits and every call scans.
	Changes *ledger.Changes
	// Lookback is the engines' (default 30 days); an engine with another one scans.
	Lookback time.Duration
	// Now is the clock (tests); time.Now when nil. Follow keeps the frontier an hour behind it,
	// and a request more than an hour ahead of it is scanned for.
	Now func() time.Time
	Log *slog.Logger

	mu    sync.Mutex
	st    *indexState // nil until built, and after a failed update
	stats IndexStats
}

// IndexStats counts what the index did.
type IndexStats struct {
	Builds  int // full scans: the first call, after a gap in the followed commits, after retention
	Updates int // calls answered from the index
	Events  int // committed events applied to the index after its build
	Hours   int // hours of AI token usage read again because events landed in them
	Scans   int // calls the index could not answer (an earlier instant, another lookback)
}

// Stats returns the counters.
func (x *Index) Stats() IndexStats {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.stats
}

func (x *Index) lookback() time.Duration {
	if x.Lookback <= 0 {
		return 30 * 24 * time.Hour
	}
	return x.Lookback
}

func (x *Index) now() time.Time {
	if x.Now != nil {
		return x.Now()
	}
	return time.Now()
}

func (x *Index) log() *slog.Logger {
	if x.Log != nil {
		return x.Log
	}
	return slog.New(slog.DiscardHandler)
}

type indexState struct {
	// frontier: the document state holds every known document event before it. Later ones are
	// not kept: they are in the store, and advance reads them from there when a request asks
	// for an instant past them (an hour or two of events, which held in memory cost more than
	// the documents themselves at a high ingest rate).
	frontier time.Time
	// since: ingest jobs and token hours are kept from here on (the frontier minus the lookback).
	since    time.Time
	archived string // the months retention had archived when the index was built
	tenants  map[string]*tenantIndex
	pruned   time.Time // tombstones deleted before this were pruned
	// docEvents reads the stored document events of [from, to) in key order (the store's).
	docEvents func(ctx context.Context, from, to time.Time, fn func(ledger.EventKey, *event.Event) error) error
	// models: the ai_tokens meter is indexed (a flow meter with feature and model dimensions);
	// tag is its aggregation's state tag; dirty holds the tenant hours whose rollups may have
	// changed since they were read (an event of the tenant landed in the hour), each with the
	// number of the update that last saw one (Follow reads an hour again once an update goes by
	// without one).
	models  bool
	tag     byte
	dirty   map[tenantHour]uint64
	updates uint64
	pairs   map[string][2]string // (feature, model) by the rollup group that names it
}

type tenantHour struct {
	tenant string
	hour   int64 // unix seconds
}

type tenantIndex struct {
	docs   map[string]docEntry   // by document id
	groups map[string]*hashGroup // live documents with a content hash, by hash
	sum    docSummary            // owners: live documents by owner
	ingest map[string]map[string][]ingestJob
	tokens map[[2]string][]hourState // (feature, model) → hours in order
}

// docEntry is a document's latest event: 48 bytes, plus its id as the map's key. The content
// hash and the owner are interned (unique.Handle): a document holds a pointer to strings that
// its tenant's documents share. A deleted document is kept (a tombstone, without its figures)
// so that an older event arriving late cannot bring it back, until no event can be older than
// its deletion any more (pruneTombstones).
type docEntry struct {
	key        ledger.EventKey
	bytes      int64
	hash, user handle // zero: none ("")
	live       bool
}

// handle is an interned string; the zero handle stands for "".
type handle = unique.Handle[string]

func intern(s string) handle {
	if s == "" {
		return handle{}
	}
	return unique.Make(s)
}

func str(h handle) string {
	if h == (handle{}) {
		return ""
	}
	return h.Value()
}

// docEvent is a document event to apply.
type docEvent struct {
	key        ledger.EventKey
	id         string
	hash, user handle
	bytes      int64
	created    bool
}

// hashGroup is the live documents sharing a content hash: count, bytes, and the multiset of
// sizes (only once there are two: most hashes have one document), so that the largest is known
// again when it goes.
type hashGroup struct {
	n, sum, large int64
	sizes         map[int64]int
}

type ingestJob struct {
	key            ledger.EventKey
	bytes, records int64
}

type hourState struct {
	hour int64 // unix seconds
	st   meter.State
}

// inputs returns the raw summaries and the AI token usage of the tenants at at (on an hour) over
// lookback; ok is false when the index cannot answer and the caller must scan. models is nil
// when the ai_tokens meter is not indexed.
func (x *Index) inputs(ctx context.Context, tenants []string, at time.Time, lookback time.Duration) (map[string]*rawSummary, *modelRows, bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	// An instant more than an hour ahead of the clock is scanned for: answering it would move the
	// frontier there, and every request for the present would then scan.
	if x.Store == nil || x.Changes == nil || lookback != x.lookback() || at.After(x.now().Add(time.Hour)) {
		x.stats.Scans++
		return nil, nil, false, nil
	}
	// The update serves every later request too: a client going away must not cut it short
	// (half applied, the index would have to be rebuilt).
	ctx = context.WithoutCancel(ctx)
	if err := x.update(ctx, at); err != nil {
		x.st = nil // half applied: rebuild next time
		return nil, nil, false, fmt.Errorf("updating the insight index: %w", err)
	}
	st := x.st
	if at.Before(st.frontier) {
		x.stats.Scans++
		return nil, nil, false, nil
	}
	if err := st.advance(ctx, at, lookback); err != nil {
		x.st = nil
		return nil, nil, false, fmt.Errorf("updating the insight index: %w", err)
	}
	since := at.Add(-lookback)
	if st.models {
		if err := x.refresh(ctx, since, at, 0); err != nil {
			x.st = nil
			return nil, nil, false, fmt.Errorf("updating the insight index: %w", err)
		}
	}
	raw := make(map[string]*rawSummary, len(tenants))
	var models *modelRows
	if st.models {
		models = newModelRows()
	}
	for _, name := range tenants {
		t := st.tenants[name]
		raw[name] = t.summary(since, at)
		if models != nil {
			t.modelUse(models, name, st.tag, since, at)
		}
	}
	x.stats.Updates++
	return raw, models, true, nil
}

// update builds the index, or applies the events committed since the last call.
func (x *Index) update(ctx context.Context, at time.Time) error {
	archived, err := x.archivedMonths(ctx)
	if err != nil {
		return err
	}
	if x.st == nil || x.st.archived != archived {
		return x.build(ctx, at, archived)
	}
	changes, complete, err := x.Changes.Take(ctx)
	if err != nil {
		return err
	}
	if !complete {
		x.log().Info("insight index: committed events were not all followed; rebuilding")
		return x.build(ctx, at, archived)
	}
	st := x.st
	st.updates++
	x.stats.Events += len(changes)
	for _, c := range changes {
		// Every event, whatever its type: any may feed ai_tokens (meters are configured), and
		// its tenant says whose hour to read again.
		if h := hourStart(c.Key.Time()); st.models && !h.Before(st.since) {
			st.dirty[tenantHour{strings.Clone(c.Tenant), h.Unix()}] = st.updates
		}
		if c.Raw == nil {
			continue // not a type the detectors read (NewChanges keeps rawTypes)
		}
		if isDocType(c.Type) && !c.Key.Time().Before(st.frontier) {
			continue // advance reads it from the store when the frontier passes it
		}
		ev, err := x.Store.DecodeChange(c)
		if err != nil {
			return err
		}
		if err := st.add(c.Key, &ev); err != nil {
			return err
		}
	}
	return nil
}

// RawTypes are the event types whose stored form the index decodes: give them to
// ledger.NewChanges.
func RawTypes() []string { return slices.Clone(rawTypes) }

// build scans every raw document and ingest event, and the token rollups of the lookback.
func (x *Index) build(ctx context.Context, at time.Time, archived string) error {
	start := time.Now()
	x.st = nil
	// Following starts first: an event committed during the scan is then recorded, and applying
	// it twice changes nothing.
	if err := x.Changes.Start(ctx); err != nil {
		return err
	}
	st := newIndexState(at, x.lookback(), archived)
	st.docEvents = func(ctx context.Context, from, to time.Time, fn func(ledger.EventKey, *event.Event) error) error {
		return x.Store.RawEventsOfTypesKeyed(ctx, from, to, docTypes, fn)
	}
	n := 0
	err := x.Store.RawEventsOfTypesKeyed(ctx, time.Time{}, time.Time{}, rawTypes, func(k ledger.EventKey, ev *event.Event) error {
		n++
		return st.add(k, ev)
	})
	if err != nil {
		return fmt.Errorf("scanning raw events: %w", err)
	}
	// The token usage is kept when Usage could answer the detector's query: a flow meter with
	// the two dimensions, a lookback of whole hours.
	if d, ok := x.Store.Meter("ai_tokens"); ok && d.Kind == meter.Flow && d.Aggregation != meter.UniqueCount &&
		slices.Contains(d.Dimensions, "feature") && slices.Contains(d.Dimensions, "model") && x.lookback()%time.Hour == 0 {
		st.models, st.tag = true, meter.Tag(d.Aggregation)
		if err := x.Store.FlowCells(ctx, "ai_tokens", nil, st.since, time.Time{}, modelGroup, st.setCell); err != nil {
			return fmt.Errorf("reading AI token usage: %w", err)
		}
	}
	x.st = st
	x.stats.Builds++
	x.log().Info("insight index built", "events", n, "tenants", len(st.tenants), "frontier", at, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

var modelGroup = []string{"feature", "model"}

// archivedMonths names the months retention archived (and deleted) of raw events and rollups.
func (x *Index) archivedMonths(ctx context.Context) (string, error) {
	var b strings.Builder
	for _, class := range []string{ledger.ClassRawEvents, ledger.ClassRollups} {
		ms, err := x.Store.ArchivedMonths(ctx, class)
		if err != nil {
			return "", fmt.Errorf("listing archived months: %w", err)
		}
		b.WriteString(class)
		for _, m := range ms {
			b.WriteString(" " + m.Format("2006-01"))
		}
		b.WriteString(";")
	}
	return b.String(), nil
}

// refresh reads again the token rollups of the dirty tenant hours of [since, at) (only those no
// event landed in since update number quiet, when quiet is not 0): hour by hour, the tenants
// that had events in it. Past maxDirty of them (a backfill), it reads the whole range instead.
func (x *Index) refresh(ctx context.Context, since, at time.Time, quiet uint64) error {
	st := x.st
	byHour := map[int64][]string{}
	n := 0
	for th, u := range st.dirty {
		if th.hour >= since.Unix() && th.hour < at.Unix() && (quiet == 0 || u < quiet) {
			byHour[th.hour] = append(byHour[th.hour], th.tenant)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	read := func(tenants []string, from, to int64) error {
		if tenants == nil {
			for _, t := range st.tenants {
				t.dropHours(from, to)
			}
		} else {
			slices.Sort(tenants)
			for _, name := range tenants {
				if t := st.tenants[name]; t != nil {
					t.dropHours(from, to)
				}
			}
		}
		if err := x.Store.FlowCells(ctx, "ai_tokens", tenants, time.Unix(from, 0), time.Unix(to, 0), modelGroup, st.setCell); err != nil {
			return fmt.Errorf("reading AI token usage: %w", err)
		}
		return nil
	}
	if n > maxDirty {
		hours := slices.Sorted(maps.Keys(byHour))
		from, to := hours[0], hours[len(hours)-1]+3600
		if err := read(nil, from, to); err != nil {
			return err
		}
		for th := range st.dirty {
			if th.hour >= from && th.hour < to {
				delete(st.dirty, th)
			}
		}
		x.stats.Hours += int(to-from) / 3600
		return nil
	}
	for h, tenants := range byHour {
		if err := read(tenants, h, h+3600); err != nil {
			return err
		}
		for _, t := range tenants {
			delete(st.dirty, tenantHour{t, h})
		}
		x.stats.Hours++
	}
	return nil
}

// maxDirty: past this many tenant hours to read again, one pass over every tenant's range costs
// less than a seek per tenant hour. A variable for the tests.
var maxDirty = 20000

func hourStart(t time.Time) time.Time { return t.Truncate(time.Hour) }

// Follow keeps the index current until ctx is done: it builds it at once, then every interval
// applies the events committed since, keeps the frontier an hour behind the clock, and reads
// again the token hours that events stopped landing in. A request then finds little or nothing
// to apply, even the first one; ingestion pays a point read and a decoding per event (its type
// and tenant are not in its key). An update that fails is logged and the index rebuilt later.
func (x *Index) Follow(ctx context.Context, interval time.Duration) {
	wait := interval
	for {
		if err := x.step(ctx); err != nil && ctx.Err() == nil {
			// Each failure doubles the wait (up to 10 minutes): a rebuild that keeps failing
			// must not scan every raw event every interval.
			wait = min(2*wait, 10*time.Minute)
			x.log().Warn("insight index: update failed; rebuilding later", "err", err, "in", wait)
		} else {
			wait = interval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// step is one round of Follow.
func (x *Index) step(ctx context.Context) error {
	if x.Store == nil || x.Changes == nil {
		return nil
	}
	now := x.now()
	// An hour behind: a request for the current or the previous hour (clocks differ) is still
	// answered from the index.
	frontier := now.UTC().Truncate(time.Hour).Add(-time.Hour)
	x.mu.Lock()
	defer x.mu.Unlock()
	err := x.update(ctx, frontier)
	if err == nil {
		st := x.st
		if !frontier.Before(st.frontier) {
			err = st.advance(ctx, frontier, x.lookback())
		}
		if err == nil && st.models {
			err = x.refresh(ctx, st.since, now.UTC().Truncate(time.Hour), st.updates)
		}
	}
	if err != nil {
		x.st = nil
		return fmt.Errorf("updating the insight index: %w", err)
	}
	return nil
}

func newIndexState(frontier time.Time, lookback time.Duration, archived string) *indexState {
	return &indexState{frontier: frontier, since: frontier.Add(-lookback), archived: archived, tenants: map[string]*tenantIndex{},
		dirty: map[tenantHour]uint64{}, pairs: map[string][2]string{}}
}

func (st *indexState) tenant(name string) *tenantIndex {
	t := st.tenants[name]
	if t == nil {
		t = newTenantIndex()
		st.tenants[strings.Clone(name)] = t
	}
	return t
}

func newTenantIndex() *tenantIndex {
	return &tenantIndex{docs: map[string]docEntry{}, groups: map[string]*hashGroup{}, sum: docSummary{owners: map[string]ownerDocs{}},
		ingest: map[string]map[string][]ingestJob{}, tokens: map[[2]string][]hourState{}}
}

// add takes one raw event (from the build scan or from the followed commits; twice is harmless).
// ev's strings are cloned: ev is the scan's.
func (st *indexState) add(k ledger.EventKey, ev *event.Event) error {
	switch ev.Type {
	case "document.created", "document.deleted":
		if !k.Time().Before(st.frontier) {
			return nil // advance reads it from the store when the frontier passes it
		}
		id, _ := ev.Field("document_id")
		de := docEvent{key: k, created: ev.Type == "document.created", id: strings.Clone(id)}
		if de.created {
			h, _ := ev.Field("content_hash")
			u, _ := ev.Field("user")
			de.hash, de.user = intern(h), intern(u)
			de.bytes, _ = ev.Quantity("bytes")
		}
		if k.Time().Before(st.frontier) {
			st.tenant(ev.Tenant).applyDoc(de)
		}
	case "ingest.completed":
		h, ok := ev.Field("content_hash")
		if !ok || h == "" || k.Time().Before(st.since) {
			return nil
		}
		src, _ := ev.Field("source")
		b, _ := ev.Quantity("bytes")
		r, _ := ev.Quantity("records")
		st.tenant(ev.Tenant).addJob(strings.Clone(src), strings.Clone(h), ingestJob{key: k, bytes: b, records: r})
	}
	return nil
}

// advance moves the frontier to at (applying the stored document events between the two, in key
// order) and drops the ingest jobs and token hours that fell out of the lookback. An event
// committed after the read with a time before at comes with the next update (before the
// frontier, it is applied at once); one both read here and taken then is applied twice, which
// changes nothing.
func (st *indexState) advance(ctx context.Context, at time.Time, lookback time.Duration) error {
	if at.After(st.frontier) {
		from := st.frontier
		// Before the read: add, called back, applies what is before the frontier.
		st.frontier = at
		if err := st.docEvents(ctx, from, at, st.add); err != nil {
			return fmt.Errorf("reading document events: %w", err)
		}
		st.pruneTombstones()
	}
	if since := at.Add(-lookback); since.After(st.since) {
		for _, t := range st.tenants {
			t.dropBefore(since)
		}
		for th := range st.dirty {
			if th.hour < since.Unix() {
				delete(st.dirty, th)
			}
		}
		st.since = since
	}
	return nil
}

// setCell merges one rollup cell of ai_tokens into the tenant's hour of its (feature, model).
func (st *indexState) setCell(tenant string, hour time.Time, group []byte, s meter.State) {
	pair, ok := st.pairs[string(group)]
	if !ok {
		f, m, _ := strings.Cut(string(group), "\x00")
		pair = [2]string{f, m}
		st.pairs[string(group)] = pair
	}
	t := st.tenant(tenant)
	hs := t.tokens[pair]
	h := hour.Unix()
	i, found := slices.BinarySearchFunc(hs, h, func(e hourState, h int64) int { return cmpInt(e.hour, h) })
	if found {
		hs[i].st.Merge(s)
		return
	}
	acc := meter.State{Agg: st.tag}
	acc.Merge(s)
	t.tokens[pair] = slices.Insert(hs, i, hourState{hour: h, st: acc})
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// applyDoc applies a document event: the event with the greatest key decides the document.
func (t *tenantIndex) applyDoc(de docEvent) {
	e, known := t.docs[de.id]
	if known && de.key.Compare(e.key) <= 0 {
		return
	}
	if known && e.live {
		t.unlink(&e)
	}
	e = docEntry{key: de.key, live: de.created}
	if de.created {
		e.hash, e.user, e.bytes = de.hash, de.user, de.bytes
		t.link(&e)
	}
	t.docs[de.id] = e
}

// tombstoneMargin: a tombstone is dropped once its deletion is this much older than the late
// window, measured from the frontier (at most an hour ahead of the clock). It covers the hour,
// the 5 minutes of future skew, and clocks of the receivers that differ from this one.
const tombstoneMargin = 24 * time.Hour

// pruneTombstones forgets the deleted documents that no event can reach any more: an event is
// accepted only if it is at most event.LateWindow older than its receipt, so once a deletion is
// older than that, every event still to come has a greater key and decides the document alone,
// tombstone or not. It sweeps the documents once a day of the frontier (the tombstones live
// 36 to 37 days).
func (st *indexState) pruneTombstones() {
	cutoff := st.frontier.Add(-event.LateWindow - tombstoneMargin).Truncate(24 * time.Hour)
	if !cutoff.After(st.pruned) {
		return
	}
	st.pruned = cutoff
	for _, t := range st.tenants {
		for id, e := range t.docs {
			if !e.live && e.key.Time().Before(cutoff) {
				delete(t.docs, id)
			}
		}
	}
}

func (t *tenantIndex) link(e *docEntry) {
	t.sum.live++
	t.sum.liveBytes += e.bytes
	user := str(e.user)
	o := t.sum.owners[user]
	o.docs++
	o.bytes += e.bytes
	t.sum.owners[user] = o
	if e.hash == (handle{}) {
		return
	}
	hash := e.hash.Value()
	g := t.groups[hash]
	if g == nil {
		t.groups[hash] = &hashGroup{n: 1, sum: e.bytes, large: e.bytes}
		return // one document: no duplicate figures
	}
	t.count(g, -1)
	if g.sizes == nil {
		g.sizes = map[int64]int{g.large: 1}
	}
	g.n++
	g.sum += e.bytes
	g.sizes[e.bytes]++
	g.large = max(g.large, e.bytes)
	t.count(g, 1)
}

func (t *tenantIndex) unlink(e *docEntry) {
	t.sum.live--
	t.sum.liveBytes -= e.bytes
	user := str(e.user)
	o := t.sum.owners[user]
	o.docs--
	o.bytes -= e.bytes
	if o.docs == 0 {
		delete(t.sum.owners, user)
	} else {
		t.sum.owners[user] = o
	}
	if e.hash == (handle{}) {
		return
	}
	hash := e.hash.Value()
	g := t.groups[hash]
	t.count(g, -1)
	g.n--
	g.sum -= e.bytes
	if g.n == 0 {
		delete(t.groups, hash)
		return
	}
	if g.sizes[e.bytes]--; g.sizes[e.bytes] == 0 {
		delete(g.sizes, e.bytes)
		if e.bytes == g.large {
			g.large = 0
			for b := range g.sizes {
				g.large = max(g.large, b)
			}
		}
	}
	if g.n == 1 {
		g.sizes = nil // one document left: its size is the sum
	}
	t.count(g, 1)
}

// count adds (sign 1) or removes (-1) a hash group's share of the duplicate figures.
func (t *tenantIndex) count(g *hashGroup, sign int64) {
	if g.n > 1 {
		t.sum.dupGroups += sign
		t.sum.copies += sign * (g.n - 1)
		t.sum.wasted += sign * (g.sum - g.large)
	}
}

func (t *tenantIndex) addJob(src, hash string, j ingestJob) {
	byHash := t.ingest[src]
	if byHash == nil {
		byHash = map[string][]ingestJob{}
		t.ingest[src] = byHash
	}
	jobs := byHash[hash]
	i, found := slices.BinarySearchFunc(jobs, j.key, func(e ingestJob, k ledger.EventKey) int { return e.key.Compare(k) })
	if !found {
		byHash[hash] = slices.Insert(jobs, i, j)
	}
}

// dropBefore forgets the ingest jobs and token hours before since.
func (t *tenantIndex) dropBefore(since time.Time) {
	for src, byHash := range t.ingest {
		for h, jobs := range byHash {
			i := 0
			for i < len(jobs) && jobs[i].key.Time().Before(since) {
				i++
			}
			if i == len(jobs) {
				delete(byHash, h)
			} else if i > 0 {
				byHash[h] = slices.Clone(jobs[i:])
			}
		}
		if len(byHash) == 0 {
			delete(t.ingest, src)
		}
	}
	t.dropHours(0, since.Unix())
}

// dropHours removes the token hours in [from, to).
func (t *tenantIndex) dropHours(from, to int64) {
	for pair, hs := range t.tokens {
		i, _ := slices.BinarySearchFunc(hs, from, func(e hourState, h int64) int { return cmpInt(e.hour, h) })
		j, _ := slices.BinarySearchFunc(hs, to, func(e hourState, h int64) int { return cmpInt(e.hour, h) })
		if i == j {
			continue
		}
		if hs = slices.Delete(hs, i, j); len(hs) == 0 {
			delete(t.tokens, pair)
		} else {
			t.tokens[pair] = hs
		}
	}
}

// summary is the tenant's raw summary at at: its live documents (the frontier is at) and its
// hashed ingest jobs in [since, at). A nil tenant has no events.
func (t *tenantIndex) summary(since, at time.Time) *rawSummary {
	s := &rawSummary{docs: docSummary{owners: map[string]ownerDocs{}}, ingest: map[string]sourceIngest{}}
	if t == nil {
		return s
	}
	owners := s.docs.owners
	s.docs = t.sum
	s.docs.owners = owners
	for u, o := range t.sum.owners {
		owners[u] = o
	}
	for src, byHash := range t.ingest {
		var si sourceIngest
		for _, jobs := range byHash {
			var n, b, r, firstBytes, firstRecords int64
			for _, j := range jobs {
				jt := j.key.Time()
				if jt.Before(since) {
					continue
				}
				if !jt.Before(at) {
					break
				}
				if n == 0 {
					firstBytes, firstRecords = j.bytes, j.records
				}
				n++
				b += j.bytes
				r += j.records
			}
			if n == 0 {
				continue
			}
			si.jobs += n
			si.hashes++
			if n > 1 {
				si.repeats += n - 1
				si.wastedBytes += b - firstBytes
				si.wastedRecords += r - firstRecords
			}
		}
		if si.hashes > 0 {
			s.ingest[src] = si
		}
	}
	return s
}

// modelUse adds the tenant's token usage in [since, at) to mr, each group's hours merged in
// order as Usage merges its cells.
func (t *tenantIndex) modelUse(mr *modelRows, name string, tag byte, since, at time.Time) {
	if mr.byTenant[name] == nil {
		mr.byTenant[name] = map[[2]string]int64{}
	}
	if t == nil {
		return
	}
	from, to := since.Unix(), at.Unix()
	for pair, hs := range t.tokens {
		i, _ := slices.BinarySearchFunc(hs, from, func(e hourState, h int64) int { return cmpInt(e.hour, h) })
		acc := meter.State{Agg: tag}
		seen := false
		for _, h := range hs[i:] {
			if h.hour >= to {
				break
			}
			acc.Merge(h.st)
			seen = true
		}
		if seen {
			mr.add(name, pair[0], pair[1], acc.Value)
		}
	}
}
