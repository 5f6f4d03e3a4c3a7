package audit

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBound(t *testing.T) {
	cases := []struct {
		in, want string
		max      int
	}{
		{"/v1/usage", "/v1/usage", 16},
		{strings.Repeat("a", 16), strings.Repeat("a", 16), 16},
		{strings.Repeat("a", 17), strings.Repeat("a", 16) + "…[truncated from 17 bytes]", 16},
		// Cut back to a rune start: "é" is two bytes.
		{"abcdefghijklmno" + "é", "abcdefghijklmno…[truncated from 17 bytes]", 16},
		// Invalid UTF-8 is replaced; a short value stays whole.
		{"a\xffb", "a\uFFFDb", 16},
		// Replacement characters that would pass the bound are dropped and the value marked.
		// (a run of invalid bytes becomes one).
		{strings.Repeat("\xff", 8), "\uFFFD", 16},
		{strings.Repeat("\xffa", 8), strings.Repeat("\uFFFDa", 4) + "…[truncated from 16 bytes]", 16},
	}
	for _, c := range cases {
		got := Bound(c.in, c.max)
		if got != c.want {
			t.Errorf("Bound(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Bound(%q) = %q is not valid UTF-8", c.in, got)
		}
	}
	// Whatever the input, the result stays within max plus the mark.
	for _, n := range []int{0, 1, 255, 256, 257, 1 << 20} {
		for _, unit := range []string{"x", "é", "\xff", "\x00", "😀"} {
			in := strings.Repeat(unit, n)
			if got := Bound(in, 256); len(got) > 256+len(truncatedMark)+len(" bytes]")+20 {
				t.Errorf("Bound(%d × %q) is %d bytes", n, unit, len(got))
			}
		}
	}
}

// TestAppendBoundsEveryTextField: an entry made of huge caller-supplied values is stored
// within the bound, every text field marked, and the chain still verifies.
func TestAppendBoundsEveryTextField(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	l, err := Open(db, Options{MaxFieldBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("A", 1<<20)
	e, err := l.Append(context.Background(), Entry{Subject: huge, Kind: huge, Action: huge, Method: huge, Path: "/" + huge, Tenant: huge, Reason: huge, Status: 401})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"subject": e.Subject, "kind": e.Kind, "action": e.Action, "method": e.Method, "path": e.Path, "tenant": e.Tenant, "reason": e.Reason} {
		if len(v) > 128 || !strings.Contains(v, "truncated from") {
			t.Errorf("%s: %d bytes, %q", name, len(v), v[:min(len(v), 100)])
		}
	}
	l2, err := Open(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	stored, err := l2.List(context.Background(), 0, 10)
	if err != nil || len(stored) != 1 || stored[0].Path != e.Path {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	if _, err := Verify(context.Background(), db, nil); err != nil {
		t.Fatalf("the chain does not verify: %v", err)
	}
	it, _ := db.NewIter(nil)
	defer it.Close()
	total := 0
	for ok := it.First(); ok; ok = it.Next() {
		total += len(it.Key()) + len(it.Value())
	}
	if total > 2048 {
		t.Errorf("a 7 MiB entry took %d bytes in the store", total)
	}
}
