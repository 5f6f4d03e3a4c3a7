package meter

import (
	"encoding/binary"
	"fmt"
)

// State is the aggregate of some events of one meter: a rollup cell, a total, a period sum.
// Its encoding is what the store's merge operator combines, so it must stay stable.
type State struct {
	Agg   byte  // 'S' sum and count, 'M' max, 'L' latest
	Value int64 //
	Time  int64 // latest: event time in unix nanoseconds of Value
}

// Tag returns the state tag of an aggregation.
func Tag(a Aggregation) byte {
	switch a {
	case Max:
		return 'M'
	case Latest:
		return 'L'
	default:
		return 'S'
	}
}

// Merge folds newer into s. For latest, the later event time wins; on a tie the newer operand
// (the later arrival) wins, which keeps the result deterministic.
func (s *State) Merge(newer State) {
	switch s.Agg {
	case 'S':
		s.Value += newer.Value
	case 'M':
		s.Value = max(s.Value, newer.Value)
	case 'L':
		if newer.Time >= s.Time {
			s.Value, s.Time = newer.Value, newer.Time
		}
	}
}

// Append appends the encoding of s to b.
func (s State) Append(b []byte) []byte {
	b = append(b, s.Agg)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Value))
	if s.Agg == 'L' {
		b = binary.BigEndian.AppendUint64(b, uint64(s.Time))
	}
	return b
}

// Decode reads a state encoded by Append.
func Decode(b []byte) (State, error) {
	if len(b) < 9 {
		return State{}, fmt.Errorf("aggregate state of %d bytes is too short", len(b))
	}
	s := State{Agg: b[0], Value: int64(binary.BigEndian.Uint64(b[1:9]))}
	switch s.Agg {
	case 'S', 'M':
		if len(b) != 9 {
			return State{}, fmt.Errorf("aggregate state %q has %d bytes, want 9", s.Agg, len(b))
		}
	case 'L':
		if len(b) != 17 {
			return State{}, fmt.Errorf("latest state has %d bytes, want 17", len(b))
		}
		s.Time = int64(binary.BigEndian.Uint64(b[9:17]))
	default:
		return State{}, fmt.Errorf("unknown aggregate state tag %q", s.Agg)
	}
	return s, nil
}
