package audit

import (
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultMaxFieldBytes bounds each text field of an entry when Options.MaxFieldBytes is unset.
const DefaultMaxFieldBytes = 256

// truncatedMark ends a value that Bound cut; the original length follows it.
const truncatedMark = "…[truncated from "

// Bound returns s cut to at most max bytes of valid UTF-8, marked with its original length
// when cut (the mark adds at most 40 bytes). Invalid UTF-8 is replaced first, so the stored
// JSON cannot grow past the bound by escaping.
func Bound(s string, max int) string {
	if len(s) <= max && utf8.ValidString(s) {
		return s
	}
	orig := len(s)
	if len(s) > max {
		cut := max
		// Back to a rune start, so that a valid value is not cut inside a character.
		for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
			cut--
		}
		s = s[:cut]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	truncated := orig > max
	for len(s) > max { // replacement characters are longer than the bytes they replace
		_, n := utf8.DecodeLastRuneInString(s)
		s, truncated = s[:len(s)-n], true
	}
	if !truncated {
		return s
	}
	return s + truncatedMark + strconv.Itoa(orig) + " bytes]"
}

// bound applies Bound to every text field of e, whichever fields Entry gains later: whatever
// a caller sends (path, tenant, reason, query...) takes a bounded place in the trail.
func (e *Entry) bound(max int) {
	v := reflect.ValueOf(e).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String {
			f.SetString(Bound(f.String(), max))
		}
	}
}
