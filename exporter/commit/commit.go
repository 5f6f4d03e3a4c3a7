// Package commit is the one interface through which ingested events reach the ledger. A single
// node commits them to its own store (Local); a cluster replica publishes them to the replicated
// log, from which every replica's applier commits them (exporter/cluster). The HTTP API does not
// know which.
package commit

import (
	"context"
	"errors"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// ErrUnavailable is wrapped by errors that a retry of the same request may cure (the log has no
// quorum, the store is closing): the API answers 503 with Retry-After.
var ErrUnavailable = errors.New("the ledger is unavailable")

// ErrTooLarge is wrapped by errors about a request too large to be committed whole (cluster
// mode: larger than one message of the log may be): the API answers 413.
var ErrTooLarge = errors.New("the request is too large to commit as a whole")

// Outcome is what became of a request's events.
type Outcome struct {
	ledger.Result
	// Seq is the position of the request in the replicated log (cluster mode); 0 on a single node.
	Seq uint64
	// Unapplied is true when the events are durable in the log but the local replica had not
	// applied them when the answer was due: Accepted then counts every event of the request, as
	// the split between new events and duplicates is not known yet.
	Unapplied bool
}

// Committer makes a request's events durable, all or nothing.
type Committer interface {
	Commit(ctx context.Context, events []event.Event) (Outcome, error)
}

// Local commits to the node's own store: the single-node mode.
type Local struct{ Store *ledger.Store }

// Commit implements Committer.
func (l Local) Commit(ctx context.Context, events []event.Event) (Outcome, error) {
	res, err := l.Store.Commit(ctx, events)
	if errors.Is(err, ledger.ErrClosed) {
		err = errors.Join(ErrUnavailable, err)
	}
	return Outcome{Result: res}, err
}
