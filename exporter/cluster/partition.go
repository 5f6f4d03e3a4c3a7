package cluster

import (
	"fmt"
	"hash/fnv"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/usagemeter/usagemeter/exporter/event"
)

// Tenant partitions. The log's subjects are <prefix>.events.<p>, p = FNV-1a(tenant) mod N, and
// <prefix>.events.multi for a request whose events span several partitions (still one message:
// all or nothing). A replica may own a subset of the partitions: it applies only their messages
// (and its own tenants' events of the multi ones), so its store, /metrics and quotas cover only
// its tenants, and it forwards tenant-scoped requests for other tenants to a peer that owns them.
type partitions struct {
	n     int
	owned []bool
	peers map[int][]*url.URL // partition → replicas owning it
}

const multiPartition = "multi"

func parsePartitions(o Options) (*partitions, error) {
	p := &partitions{n: max(o.Partitions, 1), peers: map[int][]*url.URL{}}
	p.owned = make([]bool, p.n)
	if strings.TrimSpace(o.Owned) == "" {
		for i := range p.owned {
			p.owned[i] = true
		}
	} else {
		list, err := partitionList(o.Owned, p.n)
		if err != nil {
			return nil, fmt.Errorf("--cluster.owned=%q: %w", o.Owned, err)
		}
		for _, i := range list {
			p.owned[i] = true
		}
	}
	for _, peer := range o.Peers {
		base, list, ok := strings.Cut(peer, "=")
		u, err := url.Parse(base)
		if !ok || err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("--cluster.peer=%q: want http(s)://host:port=PARTITIONS, e.g. http://10.0.0.2:9477=0,1", peer)
		}
		parts, err := partitionList(list, p.n)
		if err != nil {
			return nil, fmt.Errorf("--cluster.peer=%q: %w", peer, err)
		}
		for _, i := range parts {
			p.peers[i] = append(p.peers[i], u)
		}
	}
	return p, nil
}

func partitionList(s string, n int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		i, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || i < 0 || i >= n {
			return nil, fmt.Errorf("%q is not a partition number in [0, %d)", f, n)
		}
		out = append(out, i)
	}
	return out, nil
}

func (p *partitions) of(tenant string) int {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	return int(h.Sum32() % uint32(p.n))
}

func (p *partitions) ownsAll() bool { return !slices.Contains(p.owned, false) }

func (p *partitions) owns(tenant string) bool { return p.owned[p.of(tenant)] }

// filter lists the subjects this replica applies.
func (p *partitions) filter(prefix string) []string {
	if p.ownsAll() {
		return []string{prefix + ".events.>"}
	}
	var out []string
	for i, own := range p.owned {
		if own {
			out = append(out, fmt.Sprintf("%s.events.%d", prefix, i))
		}
	}
	return append(out, prefix+".events."+multiPartition)
}

// subject is where a request's events go, and whether this replica applies all of them.
func (p *partitions) subject(prefix string, events []event.Event) (string, bool) {
	first := -1
	for i := range events {
		part := p.of(events[i].Tenant)
		if first == -1 {
			first = part
		} else if part != first {
			all := true
			for j := range events {
				all = all && p.owns(events[j].Tenant)
			}
			return prefix + ".events." + multiPartition, all
		}
	}
	if first == -1 {
		first = 0
	}
	return fmt.Sprintf("%s.events.%d", prefix, first), p.owned[first]
}

// keep drops the events of a multi-partition message that this replica does not own.
func (p *partitions) keep(events []event.Event) []event.Event {
	if p.ownsAll() {
		return events
	}
	out := events[:0]
	for _, ev := range events {
		if p.owns(ev.Tenant) {
			out = append(out, ev)
		}
	}
	return out
}

// describe is the X-Usagemeter-Partitions value: the partitions owned, of how many.
func (p *partitions) describe() string {
	var own []string
	for i, o := range p.owned {
		if o {
			own = append(own, strconv.Itoa(i))
		}
	}
	return strings.Join(own, ",") + "/" + strconv.Itoa(p.n)
}
