package cluster

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
)

// A log message is one ingest request, all of its events: JetStream stores a message whole or
// not at all, so a request stays all or nothing. Its events travel in their stored form (the
// same bytes the ledger keeps, exporter/event/stored.go) with their time, already validated: the
// applier does not judge them again against its own clock, which may be days later on a replay.
//
//	0x01                      format
//	uvarint                   number of events
//	per event: varint         time, unix nanoseconds
//	           uvarint + bytes  stored form
const formatV1 = 0x01

// headerFormat names the format of a message's body.
const headerFormat = "Usagemeter-Format"

func encodeEvents(events []event.Event) []byte {
	n := 1 + binary.MaxVarintLen64
	for i := range events {
		n += 2*binary.MaxVarintLen64 + len(events[i].Raw)
	}
	b := make([]byte, 0, n)
	b = append(b, formatV1)
	b = binary.AppendUvarint(b, uint64(len(events)))
	for i := range events {
		b = binary.AppendVarint(b, events[i].Time.UnixNano())
		b = binary.AppendUvarint(b, uint64(len(events[i].Raw)))
		b = append(b, events[i].Raw...)
	}
	return b
}

var errTruncated = errors.New("truncated message")

func decodeEvents(dec *event.Decoder, b []byte) ([]event.Event, error) {
	if len(b) == 0 || b[0] != formatV1 {
		return nil, fmt.Errorf("unknown message format (first byte %#x)", firstByte(b))
	}
	b = b[1:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return nil, errTruncated
	}
	b = b[n:]
	events := make([]event.Event, 0, count)
	for i := uint64(0); i < count; i++ {
		ns, n := binary.Varint(b)
		if n <= 0 {
			return nil, errTruncated
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return nil, errTruncated
		}
		raw := b[n : n+int(size)]
		b = b[n+int(size):]
		ev, err := dec.DecodeStored(raw, time.Unix(0, ns).UTC())
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		events = append(events, ev)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last event", len(b))
	}
	return events, nil
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// msgID names a request by the identities (source, id) of its events, in order: a request sent
// again, through any replica, carries the same id and JetStream drops it inside its duplicate
// window. Only an optimization: the ledger's dedupe on (source, id) is exact at any distance.
func msgID(events []event.Event) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for i := range events {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(events[i].Source)))])
		h.Write([]byte(events[i].Source))
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(events[i].ID)))])
		h.Write([]byte(events[i].ID))
	}
	return hex.EncodeToString(h.Sum(nil)[:20])
}
