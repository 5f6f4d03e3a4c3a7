package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/event"
)

// A ledger replica in cluster mode applies an ordered, replicated log (exporter/cluster). Each
// message's events are committed with a Mark, the message's position in that log, written in
// the same batch as the events: after a crash the replica resumes right after the last message
// whose events are durable, and a message applied twice changes nothing (dedupe on source, id).

// pApplied is m/applied/<log>: the last log position whose events are committed (uint64 BE).
const pApplied = pMeta + "applied/"

// Mark is a position in an external, ordered log.
type Mark struct {
	Log string
	Seq uint64
}

// Pending is a commit queued by Submit.
type Pending struct{ done chan commitDone }

// Wait returns the outcome of the commit: once it returns without error, the events and their
// mark are durable.
func (p Pending) Wait() (Result, error) {
	d := <-p.done
	return d.res, d.err
}

// Submit queues a request's events for commit with the log position they come from and returns
// without waiting for the commit. Requests submitted one after another by one goroutine are
// committed in that order (several of them may share one group commit and its fsync), so an
// applier can keep the writer busy while it reads the next messages. The mark is recorded in the
// same batch as the events; a group that commits several marks of one log keeps the highest.
func (s *Store) Submit(ctx context.Context, events []event.Event, mark Mark) (Pending, error) {
	if mark.Log == "" {
		return Pending{}, errors.New("ledger: a mark needs the name of its log")
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closing.Load() {
		return Pending{}, ErrClosed
	}
	req := &commitReq{events: make([]prepared, len(events)), done: make(chan commitDone, 1), mark: &mark}
	a := &arena{}
	for i := range events {
		req.events[i] = s.prepare(&events[i], a) // the writer numbers the events in commit order
	}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return Pending{}, ctx.Err()
	}
	return Pending{done: req.done}, nil
}

// Applied is the last position of the named log whose events are committed; 0 when none is.
func (s *Store) Applied(log string) (uint64, error) {
	v, closer, err := s.db.Get([]byte(pApplied + log))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the applied position of %s: %w", log, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("applied position of %s has %d bytes, want 8", log, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// AppliedLogs lists every log position recorded in the store.
func (s *Store) AppliedLogs(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.scan(ctx, []byte(pApplied), func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("applied position %q has %d bytes, want 8", k, len(v))
		}
		out[string(k[len(pApplied):])] = binary.BigEndian.Uint64(v)
		return nil
	})
	return out, err
}

// groupMarks keeps the highest mark of each log among a group's requests.
func groupMarks(group []*commitReq) []Mark {
	var marks []Mark
	for _, r := range group {
		if r.mark == nil {
			continue
		}
		found := false
		for i := range marks {
			if marks[i].Log == r.mark.Log {
				marks[i].Seq = max(marks[i].Seq, r.mark.Seq)
				found = true
			}
		}
		if !found {
			marks = append(marks, *r.mark)
		}
	}
	return marks
}

func setMarks(b *pebble.Batch, marks []Mark) error {
	for _, m := range marks {
		if err := b.Set([]byte(pApplied+m.Log), binary.BigEndian.AppendUint64(nil, m.Seq), nil); err != nil {
			return err
		}
	}
	return nil
}

// writeMarks records the marks of a group whose events were all duplicates.
func (s *Store) writeMarks(marks []Mark) error {
	if len(marks) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := setMarks(b, marks); err != nil {
		return err
	}
	return s.commitBatch(b, pebble.Sync)
}

// errAfterFailedMark refuses a log's messages queued behind one whose commit failed.
var errAfterFailedMark = errors.New("an earlier message of this log failed to commit: resume from the last applied position")

// markFailed remembers the logs of a group whose commit failed. Messages of those logs already
// queued behind it must not commit: their mark would move the log's position past the messages
// that failed, and a replica resuming from it would skip them.
func (s *Store) markFailed(group []*commitReq) {
	for _, r := range group {
		if r.mark != nil {
			if s.failedLogs == nil {
				s.failedLogs = map[string]bool{}
			}
			s.failedLogs[r.mark.Log] = true
		}
	}
}

// refuseAfterFailedMark fails the requests of a log whose earlier commit failed, until the
// applier resumes at the position right after the last one committed.
func (s *Store) refuseAfterFailedMark(group []*commitReq) []*commitReq {
	if len(s.failedLogs) == 0 {
		return group
	}
	kept := group[:0]
	for _, r := range group {
		if r.mark != nil && s.failedLogs[r.mark.Log] {
			applied, err := s.Applied(r.mark.Log)
			if err == nil && r.mark.Seq == applied+1 {
				delete(s.failedLogs, r.mark.Log)
			} else {
				if err == nil {
					err = errAfterFailedMark
				}
				r.done <- commitDone{err: fmt.Errorf("log %s position %d: %w", r.mark.Log, r.mark.Seq, err)}
				continue
			}
		}
		kept = append(kept, r)
	}
	return kept
}
