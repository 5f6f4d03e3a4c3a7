package notify

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/notify/notifytest"
)

const killChildEnv = "NOTIFY_KILL_CHILD"

// TestDispatcherKillChild is the dispatcher of TestKill9LosesNothing, run in a child process.
func TestDispatcherKillChild(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("run by TestKill9LosesNothing")
	}
	ns := NewStore(openDB(t, dir))
	d := NewDispatcher(ns, nil, testLog(t))
	d.Backoff = Backoff{First: 50 * time.Millisecond, Max: time.Second, GiveUp: time.Hour}
	d.Run(context.Background(), 100*time.Millisecond) // until killed
}

// A dispatcher killed with SIGKILL while deliveries are in flight loses none: at restart every
// delivery not recorded as delivered is sent again with the same idempotency key (webhook-id),
// and none recorded as delivered is sent twice.
func TestKill9LosesNothing(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("in the child")
	}
	const events, answered, workers = 40, 15, 4
	dir := t.TempDir()
	rcv := newReceiver(t)
	var (
		mu          sync.Mutex
		inFlight    = map[string]bool{}
		answeredIDs = map[string]bool{} // answered 2xx before the kill
		release     = make(chan struct{})
		stuck       = make(chan struct{}, events)
	)
	// The first answered requests succeed; the next ones hang until the child is dead, so the
	// kill lands with deliveries in flight.
	rcv.SetStatus(func(n int, id string) int {
		if n < answered {
			mu.Lock()
			answeredIDs[id] = true
			mu.Unlock()
			return http.StatusOK
		}
		mu.Lock()
		inFlight[id] = true
		mu.Unlock()
		stuck <- struct{}{}
		<-release
		return http.StatusOK
	})
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := NewStore(db)
	now := time.Now()
	r, err := ns.PutRule(Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondUsageAmount, Amount: 1},
		Channels: []Channel{{Type: ChannelWebhook, URL: rcv.URL}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	rcv.Trust(r.Channels[0].Secret)
	for i := range events {
		ev := Event{Type: "usage.amount_reached", RuleID: r.ID, Version: r.Version, Tenant: "acme", Meter: "ai_tokens",
			Period: fmt.Sprintf("p%02d", i), Used: 1, At: now}
		if _, err := ns.Fire(r, ev, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	child := exec.Command(os.Args[0], "-test.run=^TestDispatcherKillChild$", "-test.count=1")
	child.Env = append(os.Environ(), killChildEnv+"="+dir)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	for range workers {
		select {
		case <-stuck:
		case <-time.After(45 * time.Second):
			_ = child.Process.Kill()
			t.Fatal("the child dispatcher never had all its workers in flight")
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	close(release)
	// The held requests finish (into closed connections) before the second phase counts.
	notifytest.Eventually(t, 30*time.Second, "the held requests to finish", func() bool { return len(rcv.Received()) == answered+workers })

	ns = NewStore(openDB(t, dir))
	ctx := ctxT(t)
	before, err := ns.Deliveries(ctx, "acme", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != events {
		t.Fatalf("%d deliveries after the kill, want %d", len(before), events)
	}
	deliveredBefore := map[string]bool{}
	for _, d := range before {
		if d.State == StateDelivered {
			deliveredBefore[d.ID] = true
		}
	}
	firstPhase := len(rcv.Received())
	// Recorded as delivered only what the receiver answered 2xx before the kill.
	mu.Lock()
	defer mu.Unlock()
	for id := range deliveredBefore {
		if !answeredIDs[id] {
			t.Errorf("%s recorded delivered but never answered", id)
		}
	}

	rcv.SetStatus(func(int, string) int { return http.StatusOK })
	d := NewDispatcher(ns, nil, testLog(t))
	if _, err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := ns.Deliveries(ctx, "acme", StateDelivered, 0)
	if err != nil || len(after) != events {
		t.Fatalf("%d delivered after the restart (%v), want %d", len(after), err, events)
	}
	seen := map[string]int{}
	for i, g := range rcv.Received() {
		seen[g.ID]++
		if i >= firstPhase && deliveredBefore[g.ID] {
			t.Errorf("%s was recorded delivered before the kill and sent again", g.ID)
		}
	}
	for _, del := range after {
		if seen[del.ID] == 0 {
			t.Errorf("%s never reached the receiver", del.ID)
		}
		if seen[del.ID] > 1 {
			again := inFlight[del.ID] || answeredIDs[del.ID]
			if !again || seen[del.ID] > 2 {
				t.Errorf("%s received %d times; only a delivery in flight at the kill may be received twice", del.ID, seen[del.ID])
			}
		}
	}
	t.Logf("at the kill: %d recorded delivered, %d in flight; %d requests after the restart", len(deliveredBefore), len(inFlight), len(rcv.Received())-firstPhase)
}
