package cluster

import (
	"fmt"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// Options are the cluster-mode flags of usage-exporter. Cluster mode is on when NATSURL is set;
// otherwise the exporter is a single node and none of this package runs.
type Options struct {
	// NATSURL lists the NATS servers, comma separated (nats://host:port,...).
	NATSURL string
	// Stream is the JetStream stream holding the ledger's log.
	Stream string
	// Subject prefixes the stream's subjects: <Subject>.events.<partition>.
	Subject string
	// Replicas is the stream's replication factor (3: a write is acknowledged once two of
	// three servers hold it, and one server may be lost).
	Replicas int
	// MaxAge is the stream's retention; 0 keeps the whole log. A replica behind the start of
	// what is retained refuses to apply rather than diverge (docs/cluster.md).
	MaxAge time.Duration
	// DuplicateWindow is JetStream's Nats-Msg-Id window (an optimization: the ledger dedupes).
	DuplicateWindow time.Duration
	// PublishTimeout bounds a publish and its retries (leader elections take seconds).
	PublishTimeout time.Duration
	// ApplyTimeout bounds how long an ingest waits for the local replica to apply its write,
	// to report new events and duplicates exactly.
	ApplyTimeout time.Duration
	// ReadWait bounds how long a read asking for a minimum log position waits for it.
	ReadWait time.Duration
	// StartTimeout bounds how long start-up waits for the stream (a cluster still electing).
	StartTimeout time.Duration
	// Partitions is the number of tenant partitions of the log (partition.go): the same on every
	// replica, recorded in the stream and checked at start.
	Partitions int
	// Owned lists the partitions this replica applies and serves (comma separated); empty: all.
	Owned string
	// Peers are other replicas and their partitions (URL=0,1), for forwarding requests about
	// tenants this replica does not own.
	Peers []string
}

// AddFlags registers the cluster flags.
func AddFlags(app *kingpin.Application, o *Options) {
	app.Flag("cluster.nats-url", "Cluster mode: NATS servers holding the replicated ledger log, comma separated (nats://127.0.0.1:4222,...). Empty: single node.").StringVar(&o.NATSURL)
	app.Flag("cluster.stream", "Cluster mode: JetStream stream of the ledger log.").Default("USAGEMETER").StringVar(&o.Stream)
	app.Flag("cluster.subject", "Cluster mode: subject prefix of the ledger log.").Default("usagemeter").StringVar(&o.Subject)
	app.Flag("cluster.replicas", "Cluster mode: replication factor of the stream (1-5; 3 survives the loss of one server).").Default("3").IntVar(&o.Replicas)
	app.Flag("cluster.max-age", "Cluster mode: retention of the log (0: keep everything). A replica behind it must be restored from a backup.").Default("0s").DurationVar(&o.MaxAge)
	app.Flag("cluster.duplicate-window", "Cluster mode: JetStream duplicate window for Nats-Msg-Id (the ledger's own dedupe is exact regardless).").Default("2m").DurationVar(&o.DuplicateWindow)
	app.Flag("cluster.publish-timeout", "Cluster mode: how long an ingest may take to be acknowledged by a quorum, retries included.").Default("10s").DurationVar(&o.PublishTimeout)
	app.Flag("cluster.apply-timeout", "Cluster mode: how long an ingest waits for this replica to apply it, to report duplicates exactly.").Default("5s").DurationVar(&o.ApplyTimeout)
	app.Flag("cluster.read-wait", "Cluster mode: how long a read asking for a minimum log position waits for it.").Default("10s").DurationVar(&o.ReadWait)
	app.Flag("cluster.partitions", "Cluster mode: number of tenant partitions of the log; the same on every replica.").Default("1").IntVar(&o.Partitions)
	app.Flag("cluster.owned", "Cluster mode: partitions this replica applies and serves, comma separated (empty: all).").StringVar(&o.Owned)
	app.Flag("cluster.peer", "Cluster mode: another replica and its partitions, URL=PARTITIONS (e.g. http://10.0.0.2:9477=1,3); requests about their tenants are forwarded there. Repeatable.").StringsVar(&o.Peers)
	app.Flag("cluster.start-timeout", "Cluster mode: how long start-up waits for the NATS cluster and the stream.").Default("60s").DurationVar(&o.StartTimeout)
}

// Enabled reports whether cluster mode is on.
func (o Options) Enabled() bool { return o.NATSURL != "" }

func (o *Options) check() error {
	if o.Stream == "" {
		o.Stream = "USAGEMETER"
	}
	if o.Subject == "" {
		o.Subject = "usagemeter"
	}
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Partitions == 0 {
		o.Partitions = 1
	}
	if o.Partitions < 1 || o.Partitions > 1024 {
		return fmt.Errorf("--cluster.partitions=%d: want 1 to 1024", o.Partitions)
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return fmt.Errorf("--cluster.replicas=%d: JetStream replicates 1 to 5 ways", o.Replicas)
	}
	if strings.ContainsAny(o.Stream, ". *>") {
		return fmt.Errorf("--cluster.stream=%q: a stream name has no dots, spaces or wildcards", o.Stream)
	}
	if strings.ContainsAny(o.Subject, " *>") {
		return fmt.Errorf("--cluster.subject=%q: no spaces or wildcards", o.Subject)
	}
	for _, d := range []*time.Duration{&o.PublishTimeout, &o.ApplyTimeout, &o.ReadWait, &o.StartTimeout, &o.DuplicateWindow} {
		if *d <= 0 {
			*d = defaultDuration(d, o)
		}
	}
	return nil
}

func defaultDuration(d *time.Duration, o *Options) time.Duration {
	switch d {
	case &o.PublishTimeout, &o.ReadWait:
		return 10 * time.Second
	case &o.ApplyTimeout:
		return 5 * time.Second
	case &o.StartTimeout:
		return time.Minute
	default:
		return 2 * time.Minute
	}
}
