package ledger

import (
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// merger combines aggregate states (meter.State). Its name is stored by Pebble: changing the
// encoding needs a new name and a migration.
var merger = &pebble.Merger{
	Name: "usagemeter.state.v1",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		st, err := meter.Decode(value)
		if err != nil {
			return nil, err
		}
		return &stateMerger{st: st}, nil
	},
}

type stateMerger struct{ st meter.State }

func (m *stateMerger) MergeNewer(value []byte) error {
	st, err := meter.Decode(value)
	if err != nil {
		return err
	}
	m.st.Merge(st)
	return nil
}

func (m *stateMerger) MergeOlder(value []byte) error {
	older, err := meter.Decode(value)
	if err != nil {
		return err
	}
	older.Merge(m.st)
	m.st = older
	return nil
}

func (m *stateMerger) Finish(bool) ([]byte, io.Closer, error) {
	return m.st.Append(nil), nil, nil
}
