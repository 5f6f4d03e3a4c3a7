package event

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// CloudEvents over HTTP has three content modes (the HTTP protocol binding, section 3):
//
//   - structured: one event as the body, Content-Type application/cloudevents+json;
//   - batched: a JSON array of events, Content-Type application/cloudevents-batch+json;
//   - binary: the attributes in ce-* headers, the data alone as the body, its media type in
//     Content-Type. The official SDKs send this mode by default.
//
// DecodeHTTP tells them apart as the binding says: by the Content-Type first (a structured or
// batched media type wins over any ce-* header), then by the presence of ce-specversion. Anything
// else goes to Decode (JSON arrays and NDJSON, the exporter's own batch forms).

// headerSpecversion is the header that marks a binary-mode message, in Go's canonical form.
const headerSpecversion = "Ce-Specversion"

// DecodeHTTP decodes the body of an HTTP request in whichever content mode it was sent. All events
// are valid, or none is returned; errors are those of Decode, and a binary-mode event is event 0.
func (d *Decoder) DecodeHTTP(h http.Header, body []byte) ([]Event, error) {
	ct := h.Get("Content-Type")
	if _, binary := h[headerSpecversion]; binary && !structuredType(ct) {
		return d.decodeBinary(h, ct, body)
	}
	return d.Decode(ct, body)
}

// structuredType reports whether a Content-Type names the structured or batched JSON format, with
// or without parameters.
func structuredType(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	return strings.EqualFold(ct, "application/cloudevents+json") || strings.EqualFold(ct, "application/cloudevents-batch+json")
}

// The context attributes binary mode carries in their own headers, canonical form.
var binaryHeaders = [...]struct {
	header string
	attr   int
}{
	{"Ce-Specversion", attrSpecversion},
	{"Ce-Id", attrID},
	{"Ce-Source", attrSource},
	{"Ce-Type", attrType},
	{"Ce-Time", attrTime},
}

// attrNames names the attributes of binaryHeaders in events and in errors.
var attrNames = [attrCount]string{attrSpecversion: "specversion", attrID: "id", attrSource: "source",
	attrType: "type", attrContentType: "datacontenttype", attrTime: "time", attrData: "data"}

// decodeBinary decodes a binary-mode message: one event. A flat event of the contract (no
// extension attribute, data of plain strings and integers) takes the one-pass path, reading the
// attributes from the headers and the data from the body; any other is turned into the structured
// event it stands for and decoded by the general path, which explains every error and keeps the
// event, extensions included, as that JSON.
func (d *Decoder) decodeBinary(h http.Header, ct string, body []byte) ([]Event, error) {
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	var verr Error
	var sc fastScan
	extensions := false
	for name, vals := range h {
		if len(name) < 3 || name[:3] != "Ce-" {
			continue
		}
		attr := -1
		for _, b := range binaryHeaders {
			if b.header == name {
				attr = b.attr
				break
			}
		}
		if attr < 0 {
			extensions = true
			continue
		}
		if len(vals) != 1 {
			verr.add(0, attrNames[attr], ReasonInvalid, fmt.Sprintf("the %s header must be sent once", strings.ToLower(name)))
			continue
		}
		v, err := headerValue(vals[0])
		if err != nil {
			verr.add(0, attrNames[attr], ReasonInvalid, fmt.Sprintf("the %s header: %v", strings.ToLower(name), err))
			continue
		}
		sc.attrs[attr] = v
		sc.seen |= 1 << attr
	}
	if len(verr.Errors) > 0 {
		return nil, verr.finish()
	}
	// The data's media type. No Content-Type: the data is read as JSON, as structured mode reads an
	// event without datacontenttype.
	mt := "application/json"
	if ct != "" {
		if ct != mt {
			var err error
			if mt, _, err = mime.ParseMediaType(ct); err != nil {
				verr.add(0, "datacontenttype", ReasonInvalid, fmt.Sprintf("the Content-Type %q is not a media type", ct))
				return nil, verr.finish()
			}
		}
		if mt != "application/json" {
			verr.add(0, "datacontenttype", ReasonInvalid, fmt.Sprintf("only application/json data is supported, not the Content-Type %q", ct))
			return nil, verr.finish()
		}
		sc.attrs[attrContentType] = unsafe.Slice(unsafe.StringData(mt), len(mt))
		sc.seen |= 1 << attrContentType
	}

	if !extensions {
		var bufs decodeBufs
		events := make([]Event, 1)
		if end, ok := scanObject(body, skipWS(body, 0), sc.dataMember(body)); ok && skipWS(body, end) == len(body) {
			sc.seen |= 1 << attrData
			if d.fastEvent(&sc, now, &events[0], bufs.one()) {
				return events, nil
			}
		}
	}
	structured, err := structuredOf(h, &sc, body)
	if err != nil {
		return nil, err
	}
	return d.Decode("application/cloudevents+json", structured)
}

// headerValue returns a header's attribute value: percent-decoded, as the binding requires of
// senders for every byte outside printable ASCII and for space, '"' and '%', and valid UTF-8.
func headerValue(v string) ([]byte, error) {
	if strings.IndexByte(v, '%') < 0 {
		// The request's own string: the decoder copies what it keeps.
		return unsafe.Slice(unsafe.StringData(v), len(v)), nil
	}
	s, err := url.PathUnescape(v) // unlike QueryUnescape, leaves '+' as it is
	if err != nil {
		return nil, fmt.Errorf("bad percent-encoding: %w", err)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("the percent-decoded value is not UTF-8")
	}
	return []byte(s), nil
}

// structuredOf writes the structured-mode event that a binary-mode message stands for: the context
// attributes and extensions of its ce-* headers, its Content-Type as datacontenttype, its body as
// data. An attribute or body that is not what the event needs is carried over as it is, for the
// general path to report.
func structuredOf(h http.Header, sc *fastScan, body []byte) ([]byte, error) {
	if !json.Valid(body) {
		return nil, &Error{Reason: ReasonMalformed, Detail: "the body, the event's data in binary mode, is not valid JSON"}
	}
	out := make([]byte, 0, len(body)+256)
	out = append(out, '{')
	member := func(name string, value []byte) {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = appendJSONString(out, name)
		out = append(out, ':')
		out = appendJSONString(out, string(value))
	}
	for _, b := range binaryHeaders {
		if sc.seen&(1<<b.attr) != 0 {
			member(attrNames[b.attr], sc.attrs[b.attr])
		}
	}
	if sc.seen&(1<<attrContentType) != 0 {
		member("datacontenttype", sc.attrs[attrContentType])
	}
	var verr Error
	for name, vals := range h {
		if len(name) < 3 || name[:3] != "Ce-" || knownHeader(name) {
			continue
		}
		attr := strings.ToLower(name[3:])
		switch {
		case !validAttrName(attr):
			verr.add(0, attr, ReasonInvalid, "an extension attribute's name must be lower-case letters and digits")
		case attr == "data" || attr == "datacontenttype":
			verr.add(0, attr, ReasonInvalid, fmt.Sprintf("in binary mode the %s is the body and its Content-Type, not a ce- header", attr))
		case len(vals) != 1:
			verr.add(0, attr, ReasonInvalid, fmt.Sprintf("the ce-%s header must be sent once", attr))
		default:
			v, err := headerValue(vals[0])
			if err != nil {
				verr.add(0, attr, ReasonInvalid, fmt.Sprintf("the ce-%s header: %v", attr, err))
				continue
			}
			member(attr, v)
		}
	}
	if len(verr.Errors) > 0 {
		return nil, verr.finish()
	}
	out = append(out, `,"data":`...)
	out = append(out, body...)
	return append(out, '}'), nil
}

func knownHeader(name string) bool {
	for _, b := range binaryHeaders {
		if b.header == name {
			return true
		}
	}
	return false
}

// validAttrName reports whether s is a CloudEvents attribute name: lower-case ASCII letters and
// digits.
func validAttrName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
