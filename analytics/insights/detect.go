package insights

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

type liveDoc struct {
	hash, user string
	bytes      int64
}

type ingestHash struct {
	jobs           int64
	bytes, records int64 // of every job with this hash
	firstBytes     int64
	firstRecords   int64
}

// rawData is what the detectors need from raw events (content hashes are not in rollups).
type rawData struct {
	docs   map[string]liveDoc                // live documents by id
	ingest map[string]map[string]*ingestHash // source → content_hash → jobs, in the lookback
}

// rawTypes are the event types the raw detectors read; docTypes those of documents.
var (
	rawTypes = []string{"document.created", "document.deleted", "ingest.completed"}
	docTypes = []string{"document.created", "document.deleted"}
)

func isDocType(typ string) bool { return typ == "document.created" || typ == "document.deleted" }

// scanRaw reads every raw event up to at once for all tenants: the live documents need the whole
// history (a document created a year ago is still held), the ingest repeats only the lookback.
func (e *Engine) scanRaw(ctx context.Context, tenants []string, at time.Time) (map[string]*rawData, error) {
	want := map[string]*rawData{}
	for _, t := range tenants {
		want[t] = &rawData{docs: map[string]liveDoc{}, ingest: map[string]map[string]*ingestHash{}}
	}
	since := at.Add(-e.lookback())
	err := e.Store.RawEventsOfTypes(ctx, time.Time{}, at, rawTypes, func(ev *event.Event) error {
		rd := want[ev.Tenant]
		if rd == nil {
			return nil
		}
		switch ev.Type {
		case "document.created":
			id, _ := ev.Field("document_id")
			h, _ := ev.Field("content_hash")
			u, _ := ev.Field("user")
			b, _ := ev.Quantity("bytes")
			rd.docs[id] = liveDoc{hash: h, user: u, bytes: b}
		case "document.deleted":
			id, _ := ev.Field("document_id")
			delete(rd.docs, id)
		case "ingest.completed":
			h, ok := ev.Field("content_hash")
			if !ok || h == "" || ev.Time.Before(since) {
				return nil
			}
			src, _ := ev.Field("source")
			b, _ := ev.Quantity("bytes")
			r, _ := ev.Quantity("records")
			m := rd.ingest[src]
			if m == nil {
				m = map[string]*ingestHash{}
				rd.ingest[src] = m
			}
			ih := m[h]
			if ih == nil {
				ih = &ingestHash{firstBytes: b, firstRecords: r}
				m[h] = ih
			}
			ih.jobs++
			ih.bytes += b
			ih.records += r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning raw events: %w", err)
	}
	return want, nil
}

// rawSummary is what the detectors use of a tenant's raw events: figures about its live
// documents and its ingest jobs. The scan path computes it from rawData; the index keeps the same
// figures up to date as events arrive (index.go).
type rawSummary struct {
	docs   docSummary
	ingest map[string]sourceIngest // by source, sources with a hashed job in the lookback
}

// docSummary describes a tenant's live documents.
type docSummary struct {
	live, liveBytes           int64
	dupGroups, copies, wasted int64                // live documents sharing a content hash
	owners                    map[string]ownerDocs // live documents by owner (users with one at least)
}

type ownerDocs struct{ docs, bytes int64 }

// sourceIngest describes the jobs of one source that carried a content hash, in the lookback.
type sourceIngest struct {
	jobs, hashes, repeats, wastedBytes, wastedRecords int64
}

// summarize computes the raw summary of a scan. The live documents are folded as the insight
// index folds them (tenantIndex.link), so that both paths count duplicates one way.
func summarize(rd *rawData) *rawSummary {
	s := &rawSummary{ingest: map[string]sourceIngest{}}
	t := newTenantIndex()
	for _, d := range rd.docs {
		t.link(&docEntry{live: true, hash: intern(d.hash), user: intern(d.user), bytes: d.bytes})
	}
	s.docs = t.sum
	for src, hashes := range rd.ingest {
		var si sourceIngest
		for _, ih := range hashes {
			si.jobs += ih.jobs
			si.hashes++
			if ih.jobs > 1 {
				si.repeats += ih.jobs - 1
				si.wastedBytes += ih.bytes - ih.firstBytes
				si.wastedRecords += ih.records - ih.firstRecords
			}
		}
		s.ingest[src] = si
	}
	return s
}

// modelRows are ai_tokens by feature and model per tenant over the lookback.
type modelRows struct {
	byTenant map[string]map[[2]string]int64 // tenant → (feature, model) → tokens
	served   map[string]map[string]bool     // feature → models serving it, across the tenants
}

func newModelRows() *modelRows {
	return &modelRows{byTenant: map[string]map[[2]string]int64{}, served: map[string]map[string]bool{}}
}

// add records a tenant's tokens of a feature and model over the lookback (the value of the usage
// row of the group); a group whose value is not positive is left out.
func (mr *modelRows) add(tenant, feature, model string, tokens int64) {
	m := mr.byTenant[tenant]
	if m == nil {
		m = map[[2]string]int64{}
		mr.byTenant[tenant] = m
	}
	if tokens <= 0 {
		return
	}
	m[[2]string{feature, model}] += tokens
	if mr.served[feature] == nil {
		mr.served[feature] = map[string]bool{}
	}
	mr.served[feature][model] = true
}

// modelUse reads the ai_tokens rollups of the lookback for all the tenants in one pass
// (ledger.FlowCells), merging each (feature, model) group's cells in the order Usage does.
func (e *Engine) modelUse(ctx context.Context, tenants []string, at time.Time) (*modelRows, error) {
	mr := newModelRows()
	d, ok := e.Store.Meter("ai_tokens")
	if !ok {
		return mr, nil
	}
	if d.Kind != meter.Flow || d.Aggregation == meter.UniqueCount {
		return e.modelUseByTenant(ctx, tenants, at)
	}
	sorted := slices.Clone(tenants)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	type groupKey struct{ tenant, group string }
	acc := map[groupKey]*meter.State{}
	tag := meter.Tag(d.Aggregation)
	err := e.Store.FlowCells(ctx, "ai_tokens", sorted, at.Add(-e.lookback()), at, []string{"feature", "model"},
		func(tenant string, _ time.Time, group []byte, st meter.State) {
			a := acc[groupKey{tenant, string(group)}]
			if a == nil {
				a = &meter.State{Agg: tag}
				acc[groupKey{tenant, string(group)}] = a
			}
			a.Merge(st)
		})
	if err != nil {
		return nil, fmt.Errorf("reading AI token usage: %w", err)
	}
	for _, t := range sorted {
		mr.byTenant[t] = map[[2]string]int64{}
	}
	for k, st := range acc {
		f, m, _ := strings.Cut(k.group, "\x00")
		mr.add(k.tenant, f, m, st.Value)
	}
	return mr, nil
}

// modelUseByTenant asks Usage tenant by tenant: for an ai_tokens meter configured as a level or
// a distinct count, which FlowCells does not read.
func (e *Engine) modelUseByTenant(ctx context.Context, tenants []string, at time.Time) (*modelRows, error) {
	mr := newModelRows()
	for _, t := range tenants {
		rows, err := e.Store.Usage(ctx, ledger.Query{Meter: "ai_tokens", Tenant: t, From: at.Add(-e.lookback()), To: at, GroupBy: []string{"feature", "model"}})
		if err != nil {
			return nil, err
		}
		mr.byTenant[t] = map[[2]string]int64{}
		for _, r := range rows {
			mr.add(t, r.Group["feature"], r.Group["model"], r.Value)
		}
	}
	return mr, nil
}

// lookups are the per-tenant figures several detectors use, read for all the tenants at once:
// one pass over the store each rather than a query (and a flush) per tenant and detector.
type lookups struct {
	storage, docBytes map[string]int64                // levels at at (0 without the meter)
	seen              map[string]map[string]time.Time // last activity per user; nil: not read
}

func (e *Engine) lookup(ctx context.Context, tenants []string, at time.Time) (*lookups, error) {
	var l lookups
	var err error
	if l.storage, err = e.levels(ctx, "storage_bytes", tenants, at); err != nil {
		return nil, err
	}
	if l.docBytes, err = e.levels(ctx, "document_bytes", tenants, at); err != nil {
		return nil, err
	}
	if d, ok := e.Store.Meter("active_users"); ok && d.Aggregation == meter.UniqueCount {
		l.seen = make(map[string]map[string]time.Time, len(tenants))
		if err := e.Store.LastSeenAll(ctx, "active_users", tenants, func(t string, seen map[string]time.Time) { l.seen[t] = seen }); err != nil {
			return nil, err
		}
	}
	return &l, nil
}

// levels are a meter's levels at at (Total over the hour before at) per tenant; 0 without the
// meter.
func (e *Engine) levels(ctx context.Context, meterName string, tenants []string, at time.Time) (map[string]int64, error) {
	out := make(map[string]int64, len(tenants))
	d, ok := e.Store.Meter(meterName)
	if !ok {
		return out, nil
	}
	if d.Kind != meter.Flow && d.Aggregation != meter.UniqueCount {
		err := e.Store.StockLevels(ctx, meterName, tenants, at, func(t string, v int64) { out[t] = v })
		return out, err
	}
	for _, t := range tenants {
		v, err := e.Store.Total(ctx, t, meterName, at.Add(-time.Hour), at)
		if err != nil {
			return nil, err
		}
		out[t] = v
	}
	return out, nil
}

// lastSeen is the tenant's last activity per user, as read by lookup or else from the store
// (which then says why active_users has none).
func (e *Engine) lastSeen(ctx context.Context, l *lookups, tenant string) (map[string]time.Time, error) {
	if seen, ok := l.seen[tenant]; ok {
		return seen, nil
	}
	return e.Store.LastSeen(ctx, "active_users", tenant)
}

func (e *Engine) planRightSizing(ctx context.Context, tenant string, at time.Time) ([]Insight, error) {
	month := time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC)
	p := rating.PeriodOf(month.AddDate(0, -1, 0))
	// Evidence threshold: a plan is advised only on a whole month of recorded usage. On a store
	// younger than the month (a fresh stack) every tenant's usage looks tiny.
	began, err := e.Store.Began(ctx)
	if err != nil || began.After(p.Start()) {
		return nil, err
	}
	current, err := e.planOf(ctx, tenant, p.End().Add(-time.Nanosecond))
	if err != nil || current == "" {
		return nil, err
	}
	if r := e.rater(e.catalogue()); r != nil {
		if _, ok := r.Catalogue.Plan(current); !ok {
			return nil, nil
		}
		s, err := r.Suggest(ctx, tenant, p, current)
		if err != nil || s == nil {
			return nil, err
		}
		amt := int64(s.Saving)
		return []Insight{{Kind: KindPlanRightSizing, Tenant: tenant, Subject: "plan",
			Title:  fmt.Sprintf("Move from plan %s to %s", current, s.Plan),
			Detail: fmt.Sprintf("Rated on %s's usage of %s, plan %s costs %d and plan %s %d minor units.", tenant, p, current, s.CurrentCost, s.Plan, s.Cost),
			Saving: Saving{Period: "month " + p.String(), Amount: &amt, Currency: r.Catalogue.Currency.Code,
				Pricing: "billing rating of the month under every catalogue plan (rating.Rater.Suggest)"},
			Evidence: []Evidence{{Query: fmt.Sprintf("rating.Rater.Suggest(tenant=%s, period=%s, current=%s)", tenant, p, current),
				Numbers: []Number{{"current_cost", int64(s.CurrentCost)}, {"suggested_cost", int64(s.Cost)}, {"saving", amt}}}}}}, nil
	}
	if e.Config == nil {
		return nil, nil
	}
	c := e.Config()
	if c == nil {
		return nil, nil
	}
	return e.limitsRightSizing(ctx, c, tenant, current, p)
}

// limitsRightSizing compares usage with plan limits when prices are not available: a plan whose
// every limit is no larger than the current plan's (one strictly smaller) and still above the
// tenant's usage fits it.
func (e *Engine) limitsRightSizing(ctx context.Context, c *config.Config, tenant, current string, p rating.Period) ([]Insight, error) {
	t, _ := c.Tenant(tenant)
	cur := c.WithOverrides(current, t)
	if len(cur.Limits) == 0 {
		return nil, nil
	}
	meters := make([]string, 0, len(cur.Limits))
	for m := range cur.Limits {
		meters = append(meters, m)
	}
	sort.Strings(meters)
	used := map[string]int64{}
	for _, m := range meters {
		d, ok := e.Store.Meter(m)
		if !ok {
			return nil, nil
		}
		var v int64
		var err error
		if d.Kind == meter.Flow || d.Aggregation == meter.UniqueCount {
			v, err = e.Store.Total(ctx, tenant, m, p.Start(), p.End())
		} else {
			v, err = e.Store.Total(ctx, tenant, m, p.End().Add(-time.Hour), p.End())
		}
		if err != nil {
			return nil, err
		}
		used[m] = v
	}
	var best *config.Plan
	bestScore := 0.0
	for i := range c.Plans {
		q := &c.Plans[i]
		if q.Name == current {
			continue
		}
		fits, smaller, score := true, false, 0.0
		for _, m := range meters {
			lim, ok := q.Limits[m]
			// Room under the plan's warning level, not only under its limit (see adviceLimits).
			if !ok || lim > cur.Limits[m] || used[m] > int64(float64(lim)*q.WarningRatio) {
				fits = false
				break
			}
			if lim < cur.Limits[m] {
				smaller = true
			}
			score += float64(lim) / float64(max(cur.Limits[m], 1))
		}
		if fits && smaller && (best == nil || score < bestScore) {
			best, bestScore = q, score
		}
	}
	if best == nil {
		return nil, nil
	}
	ev := Evidence{Query: fmt.Sprintf("exact usage of %s per limited meter, %s (GET /v1/usage, whole month; stock meters: level at the month's end)", tenant, p)}
	var parts []string
	for _, m := range meters {
		ev.Numbers = append(ev.Numbers, Number{"used_" + m, used[m]}, Number{"limit_" + current + "_" + m, cur.Limits[m]}, Number{"limit_" + best.Name + "_" + m, best.Limits[m]})
		parts = append(parts, fmt.Sprintf("%s %d (limit %d, %d on %s)", m, used[m], cur.Limits[m], best.Limits[m], best.Name))
	}
	return []Insight{{Kind: KindPlanRightSizing, Tenant: tenant, Subject: "plan",
		Title:    fmt.Sprintf("Plan %s fits within the smaller plan %s", current, best.Name),
		Detail:   fmt.Sprintf("Usage in %s: %s.", p, strings.Join(parts, ", ")),
		Saving:   Saving{Period: "month " + p.String(), Pricing: "price comparison pending: the billing rater is not wired, so only plan limits were compared"},
		Evidence: []Evidence{ev}}}, nil
}

func (e *Engine) cheaperModel(ctx context.Context, tenant string, at time.Time, mr *modelRows) ([]Insight, error) {
	costs := e.modelCosts()
	var out []Insight
	from := at.Add(-e.lookback())
	keys := make([][2]string, 0, len(mr.byTenant[tenant]))
	for k := range mr.byTenant[tenant] {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+"\x00"+keys[i][1] < keys[j][0]+"\x00"+keys[j][1] })
	for _, k := range keys {
		feature, model := k[0], k[1]
		tokens := mr.byTenant[tenant][k]
		cost, ok := costs[model]
		if !ok {
			continue
		}
		cheap, cheapCost := "", cost
		var served []string
		for m := range mr.served[feature] {
			served = append(served, m)
		}
		sort.Strings(served)
		for _, m := range served {
			if c, ok := costs[m]; ok && c < cheapCost {
				cheap, cheapCost = m, c
			}
		}
		if cheap == "" {
			continue
		}
		amt := mulDiv(tokens, cost-cheapCost, 1_000_000)
		out = append(out, Insight{Kind: KindCheaperModel, Tenant: tenant, Subject: feature + "/" + model,
			Title:  fmt.Sprintf("Feature %s could use %s instead of %s", feature, cheap, model),
			Detail: fmt.Sprintf("%d tokens of %s went to %s in the last %s; %s also serves %s and costs %d instead of %d per million tokens.", tokens, feature, model, durationDays(e.lookback()), cheap, feature, cheapCost, cost),
			Saving: Saving{Units: tokens, Unit: "tokens", Meter: "ai_tokens", Period: durationDays(e.lookback()), Amount: &amt, Currency: e.costCurrency(),
				Pricing: "provider cost per model (model cost table), not the billing catalogue, which prices tokens whatever the model"},
			Evidence: []Evidence{{Query: usageQuery("ai_tokens", tenant, from, at, "feature,model"),
				Numbers: []Number{{"tokens_" + model, tokens}, {"tokens_" + cheap, mr.byTenant[tenant][[2]string{feature, cheap}]},
					{"cost_per_million_" + model, cost}, {"cost_per_million_" + cheap, cheapCost}}}}})
	}
	return out, nil
}

func (e *Engine) costCurrency() string {
	if c := e.catalogue(); c != nil {
		return c.Currency.Code
	}
	return "USD"
}

func durationDays(d time.Duration) string { return fmt.Sprintf("%dd", int(d/(24*time.Hour))) }

func (e *Engine) duplicateDocs(ctx context.Context, tenant string, at time.Time, rs *rawSummary, l *lookups) ([]Insight, error) {
	if rs == nil {
		return nil, nil
	}
	d := &rs.docs
	dupGroups, copies, wasted, liveBytes := d.dupGroups, d.copies, d.wasted, d.liveBytes
	if wasted <= 0 {
		return nil, nil
	}
	storage := l.storage[tenant]
	s := Saving{Units: wasted, Unit: "bytes", Meter: "document_bytes", Period: "level"}
	if storage > 0 {
		s.Amount, s.Currency, s.Pricing = e.priceDelta(ctx, tenant, "storage_bytes", at, storage, storage-wasted)
	} else {
		s.Pricing = "units only: no storage_bytes reading to price"
	}
	return []Insight{{Kind: KindDuplicateDocuments, Tenant: tenant, Subject: "documents",
		Title:  fmt.Sprintf("%d redundant copies of documents hold %d bytes", copies, wasted),
		Detail: fmt.Sprintf("%d live documents share their content_hash with another live document in %d groups; keeping one of each frees %d bytes.", copies+dupGroups, dupGroups, wasted),
		Saving: s,
		Evidence: []Evidence{{Query: fmt.Sprintf("raw events document.created/document.deleted of %s up to %s, live documents grouped by content_hash", tenant, at.Format(time.RFC3339)),
			Numbers: []Number{{"live_documents", d.live}, {"live_document_bytes", liveBytes}, {"duplicate_groups", dupGroups}, {"redundant_copies", copies}, {"wasted_bytes", wasted}, {"storage_bytes", storage}}}}}}, nil
}

func (e *Engine) storage(ctx context.Context, tenant string, at time.Time, rs *rawSummary, l *lookups) ([]Insight, error) {
	var out []Insight
	storage, docBytes := l.storage[tenant], l.docBytes[tenant]
	if storage > docBytes && docBytes >= 0 {
		waste := storage - docBytes
		s := Saving{Units: waste, Unit: "bytes", Meter: "storage_bytes", Period: "level"}
		s.Amount, s.Currency, s.Pricing = e.priceDelta(ctx, tenant, "storage_bytes", at, storage, docBytes)
		out = append(out, Insight{Kind: KindUnbackedStorage, Tenant: tenant, Subject: "unbacked",
			Title:  fmt.Sprintf("%d bytes of storage are not held by live documents", waste),
			Detail: fmt.Sprintf("Storage measured %d bytes while live documents hold %d: the rest is deleted documents not purged, or data outside documents.", storage, docBytes),
			Saving: s,
			Evidence: []Evidence{{Query: usageQuery("storage_bytes", tenant, at.Add(-time.Hour), at, "") + " ; " + usageQuery("document_bytes", tenant, at.Add(-time.Hour), at, ""),
				Numbers: []Number{{"storage_bytes", storage}, {"document_bytes", docBytes}, {"unbacked_bytes", waste}}}}})
	}
	if rs == nil || rs.docs.live == 0 {
		return out, nil
	}
	seen, err := e.lastSeen(ctx, l, tenant)
	if err != nil {
		return nil, err
	}
	cut := at.Add(-time.Duration(e.idleDays()) * 24 * time.Hour)
	var idleBytes, idleDocs int64
	owners := map[string]bool{}
	for user, o := range rs.docs.owners {
		if last, ok := seen[user]; ok && last.Before(cut) {
			idleBytes += o.bytes
			idleDocs += o.docs
			owners[user] = true
		}
	}
	if idleBytes == 0 {
		return out, nil
	}
	s := Saving{Units: idleBytes, Unit: "bytes", Meter: "document_bytes", Period: "level"}
	if storage > 0 {
		s.Amount, s.Currency, s.Pricing = e.priceDelta(ctx, tenant, "storage_bytes", at, storage, storage-idleBytes)
	} else {
		s.Pricing = "units only: no storage_bytes reading to price"
	}
	out = append(out, Insight{Kind: KindIdleData, Tenant: tenant, Subject: "idle",
		Title:  fmt.Sprintf("%d documents (%d bytes) belong to users idle for %d days", idleDocs, idleBytes, e.idleDays()),
		Detail: fmt.Sprintf("%d users whose last activity is older than %s still own live documents: archive or delete them.", len(owners), cut.Format(time.DateOnly)),
		Saving: s,
		Evidence: []Evidence{{Query: fmt.Sprintf("raw document events of %s up to %s joined with each owner's last activity (active_users)", tenant, at.Format(time.RFC3339)),
			Numbers: []Number{{"idle_owners", int64(len(owners))}, {"idle_documents", idleDocs}, {"idle_bytes", idleBytes}, {"idle_days", int64(e.idleDays())}}}}})
	return out, nil
}

func (e *Engine) inactiveSeats(ctx context.Context, tenant string, at time.Time, l *lookups) ([]Insight, error) {
	if d, ok := e.Store.Meter("active_users"); !ok || d.Aggregation != meter.UniqueCount {
		return nil, nil
	}
	seen, err := e.lastSeen(ctx, l, tenant)
	if err != nil {
		return nil, err
	}
	cut := at.Add(-time.Duration(e.inactiveDays()) * 24 * time.Hour)
	var n int64
	for _, t := range seen {
		if t.Before(cut) {
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	return []Insight{{Kind: KindInactiveSeats, Tenant: tenant, Subject: "seats",
		Title:  fmt.Sprintf("%d of %d users inactive for %d days", n, len(seen), e.inactiveDays()),
		Detail: fmt.Sprintf("%d users have had no activity since %s: remove their seats (per-user list: GET /v1/analytics/engagement with the usage.read_users permission).", n, cut.Format(time.DateOnly)),
		Saving: Saving{Units: n, Unit: "users", Meter: "active_users", Period: "level",
			Pricing: "units only: the catalogue bills monthly active users, so an inactive seat is billed only in a month it is used; the saving is in seat licences"},
		Evidence: []Evidence{{Query: fmt.Sprintf("last activity per user of %s (active_users, all time) before %s", tenant, cut.Format(time.RFC3339)),
			Numbers: []Number{{"known_users", int64(len(seen))}, {"inactive_users", n}, {"inactive_days", int64(e.inactiveDays())}}}}}}, nil
}

func (e *Engine) duplicateIngest(ctx context.Context, tenant string, at time.Time, rs *rawSummary) ([]Insight, error) {
	if rs == nil {
		return nil, nil
	}
	from := at.Add(-e.lookback())
	sources := make([]string, 0, len(rs.ingest))
	for s := range rs.ingest {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	var out []Insight
	for _, src := range sources {
		si := rs.ingest[src]
		jobs, hashes, repeats, wBytes, wRecords := si.jobs, si.hashes, si.repeats, si.wastedBytes, si.wastedRecords
		if repeats == 0 {
			continue
		}
		s := Saving{Units: wBytes, Unit: "bytes", Meter: "ingest_bytes", Period: durationDays(e.lookback())}
		total, err := e.Store.Total(ctx, tenant, "ingest_bytes", from, at)
		if err != nil {
			return nil, err
		}
		s.Amount, s.Currency, s.Pricing = e.priceDelta(ctx, tenant, "ingest_bytes", at, total, total-wBytes)
		out = append(out, Insight{Kind: KindDuplicateIngest, Tenant: tenant, Subject: src,
			Title:  fmt.Sprintf("Source %s resent the same data %d times", src, repeats),
			Detail: fmt.Sprintf("%d of %d ingest jobs from %s in the last %s carried a content_hash already ingested: %d bytes and %d records ingested again.", repeats, jobs, src, durationDays(e.lookback()), wBytes, wRecords),
			Saving: s,
			Evidence: []Evidence{{Query: fmt.Sprintf("raw events ingest.completed of %s, source %s, in [%s, %s), grouped by content_hash", tenant, src, from.Format(time.RFC3339), at.Format(time.RFC3339)),
				Numbers: []Number{{"jobs_with_hash", jobs}, {"distinct_hashes", hashes}, {"repeated_jobs", repeats}, {"wasted_bytes", wBytes}, {"wasted_records", wRecords}, {"ingest_bytes", total}}}}})
	}
	return out, nil
}
