package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

// The test vector of docs/webhooks.md, shared with the Python SDK's tests.
const (
	vectorSecret = "whsec_test"
	vectorTS     = 1764806400
	vectorBody   = `{"events":[{"id":"n1-1","type":"connection.opened","ts":1764806400000,"node":"n1","client":"c1","user":"alice"}]}`
	vectorSig    = "v1=3924ea950f4e05ba2c2da05b0a18200497b9bafbfd440be1783e753b36053687"
)

func TestSignatureVector(t *testing.T) {
	if got := Sign([]string{vectorSecret}, vectorTS, []byte(vectorBody)); got != vectorSig {
		t.Fatalf("Sign = %s, want %s", got, vectorSig)
	}
	// The server's own encoding of that event is the vector's bytes.
	ev, _ := json.Marshal(&Event{ID: "n1-1", Type: ConnectionOpened, TS: 1764806400000, Node: "n1", Client: str("c1"), User: str("alice")})
	if body := `{"events":[` + string(ev) + `]}`; body != vectorBody {
		t.Errorf("encoded event:\n%s\nwant\n%s", body, vectorBody)
	}
	h := http.Header{}
	h.Set(HeaderTimestamp, "1764806400")
	h.Set(HeaderSignature, "v1=00,"+vectorSig) // rotation: any may match
	now := time.Unix(vectorTS+10, 0)
	if err := Verify(vectorSecret, h, []byte(vectorBody), 300*time.Second, now); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := Verify("other", h, []byte(vectorBody), 300*time.Second, now); err == nil {
		t.Error("Verify accepted the wrong secret")
	}
	if err := Verify(vectorSecret, h, []byte(vectorBody+" "), 300*time.Second, now); err == nil {
		t.Error("Verify accepted a changed body")
	}
	if err := Verify(vectorSecret, h, []byte(vectorBody), 300*time.Second, time.Unix(vectorTS+301, 0)); err == nil {
		t.Error("Verify accepted a stale timestamp")
	}
	two := Sign([]string{"old", vectorSecret}, vectorTS, []byte(vectorBody))
	if !strings.HasSuffix(two, ","+vectorSig) || !strings.HasPrefix(two, "v1=") {
		t.Errorf("two secrets: %s", two)
	}
}

func TestValidate(t *testing.T) {
	ok := Options{URLs: []string{"http://127.0.0.1:1/hook"}, Secrets: []string{"s"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"no URL":        {Options{Secrets: []string{"s"}}, "no URL"},
		"bad URL":       {Options{URLs: []string{"ftp://x/y"}, Secrets: []string{"s"}}, "not an http(s) URL"},
		"no host":       {Options{URLs: []string{"http:///y"}, Secrets: []string{"s"}}, "not an http(s) URL"},
		"no secret":     {Options{URLs: ok.URLs}, "secret is required"},
		"empty secret":  {Options{URLs: ok.URLs, Secrets: []string{""}}, "empty secret"},
		"unknown event": {Options{URLs: ok.URLs, Secrets: ok.Secrets, Events: []string{"room.created"}}, "unknown event type"},
		"bad namespace": {Options{URLs: ok.URLs, Secrets: ok.Secrets, PublicationNamespaces: []string{"a:b"}}, "not a namespace"},
	} {
		if err := tc.o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if _, err := New(tc.o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// receiver is a real HTTP receiver that verifies every delivery.
type receiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	fail   int // answer 500 to this many more requests
	ids    []string
	events []Event // from accepted requests
	bad    []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := Verify(rc.secret, r.Header, body, 300*time.Second, time.Now()); err != nil {
		rc.bad = append(rc.bad, err.Error())
	}
	rc.ids = append(rc.ids, r.Header.Get(HeaderID))
	if rc.fail > 0 {
		rc.fail--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var b struct{ Events []Event }
	if err := json.Unmarshal(body, &b); err != nil {
		rc.bad = append(rc.bad, "body: "+err.Error())
	}
	rc.events = append(rc.events, b.Events...)
}

func (rc *receiver) snapshot() ([]Event, []string, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Event(nil), rc.events...), append([]string(nil), rc.ids...), append([]string(nil), rc.bad...)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRetriesKeepOrderAndIDs(t *testing.T) {
	rc := &receiver{t: t, secret: "new-secret", fail: 2}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, err := New(Options{URLs: []string{srv.URL}, Secrets: []string{"old-secret", "new-secret"}, NodeID: "n1",
		MaxBatch: 3, MaxDelay: 20 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Run(context.Background())
	hooks := s.Hooks(hub.Hooks{})
	for i := range 7 {
		hooks.OnJoin("chat:1", hub.ConnectionInfo{ConnectionID: "c" + string(rune('0'+i)), UserID: "u"})
	}
	waitFor(t, "7 events", 5*time.Second, func() bool { ev, _, _ := rc.snapshot(); return len(ev) == 7 })
	ev, ids, bad := rc.snapshot()
	if len(bad) > 0 {
		t.Errorf("bad deliveries: %v", bad)
	}
	seen := map[string]bool{}
	for i, e := range ev {
		if Str(e.Client) != "c"+string(rune('0'+i)) || e.Type != MemberAdded || e.Room != "chat:1" || e.Node != "n1" || e.User == nil || *e.User != "u" {
			t.Errorf("event %d = %+v, want member.added of c%d in order", i, e, i)
		}
		if seen[e.ID] {
			t.Errorf("event id %s delivered twice", e.ID)
		}
		seen[e.ID] = true
	}
	// The two failed attempts were of the first batch, retried with its id.
	if len(ids) < 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("batch ids = %v, want the first three equal (one batch retried)", ids)
	}
	// The receiver has the events a moment before the sender reads its
	// answer and counts them.
	waitFor(t, "7 events counted", 5*time.Second, func() bool { return s.Stats().Sent == 7 })
	st := s.Stats()
	if st.Sent != 7 || st.Failed != 2 || st.Dropped != 0 {
		t.Errorf("stats = %+v, want sent 7, failed 2, dropped 0", st)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	rc := &receiver{t: t, secret: "k", fail: 1 << 30}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, _ := New(Options{URLs: []string{srv.URL}, Secrets: []string{"k"}, NodeID: "n1", MaxAttempts: 3,
		MaxDelay: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond})
	s.Run(context.Background())
	s.Hooks(hub.Hooks{}).OnConnect(hub.ConnectionInfo{ConnectionID: "c1"})
	waitFor(t, "the batch to be dropped", 5*time.Second, func() bool { return s.Stats().Dropped == 1 })
	if st := s.Stats(); st.Failed != 3 || st.Requests != 3 || st.Sent != 0 {
		t.Errorf("stats = %+v, want 3 failed attempts, nothing sent", st)
	}
	_ = s.Close(context.Background())
}

// A receiver that hangs fills the queue; the hooks keep returning at once
// and count what they drop.
func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	s, _ := New(Options{URLs: []string{srv.URL}, Secrets: []string{"k"}, NodeID: "n1", QueueSize: 5, MaxBatch: 1,
		MaxDelay: time.Millisecond, Timeout: 30 * time.Second})
	s.Run(context.Background())
	hooks := s.Hooks(hub.Hooks{})
	start := time.Now()
	for range 100 {
		hooks.OnConnect(hub.ConnectionInfo{ConnectionID: "c"})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("100 events took %s to queue with a hanging receiver", d)
	}
	// One in flight, five queued at most: at least 94 dropped.
	if st := s.Stats(); st.Dropped < 94 || st.Queued > 5 {
		t.Errorf("stats = %+v, want >= 94 dropped and <= 5 queued", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err == nil {
		t.Error("Close reported no undelivered events with a hanging receiver")
	}
}

func TestPublicationNamespaces(t *testing.T) {
	rc := &receiver{t: t, secret: "k"}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, _ := New(Options{URLs: []string{srv.URL}, Secrets: []string{"k"}, NodeID: "n1", Events: []string{ConnectionOpened},
		PublicationNamespaces: []string{"news", ""}, MaxDelay: time.Millisecond})
	s.Run(context.Background())
	h := s.Hooks(hub.Hooks{})
	if h.OnJoin != nil || h.OnDisconnect != nil {
		t.Error("hooks set for event types not asked for")
	}
	for _, room := range []string{"chat:1", "news:1", "lobby", "news:2"} {
		h.OnPublished(hub.PublishedEvent{Room: room, Type: "message", EventID: "e-1", Data: json.RawMessage(`{"a":1}`), UserID: "u", ClientID: "c"})
	}
	h.OnPublished(hub.PublishedEvent{Room: "news:3", Type: "score", EventID: "e-2"}) // by the API: no user, no client, no data
	waitFor(t, "4 publications", 5*time.Second, func() bool { ev, _, _ := rc.snapshot(); return len(ev) == 4 })
	time.Sleep(50 * time.Millisecond)
	ev, _, _ := rc.snapshot()
	if api := ev[len(ev)-1]; api.Client == nil || api.User == nil || *api.Client != "" || string(api.Data) != "null" {
		t.Errorf("API publication = %+v, want empty client and user present, data null", api)
	}
	ev = ev[:len(ev)-1]
	var rooms []string
	for _, e := range ev {
		rooms = append(rooms, e.Room)
		if e.Type != Publication || string(e.Data) != `{"a":1}` || e.EventID != "e-1" || e.EventType != "message" || Str(e.Client) != "c" {
			t.Errorf("publication = %+v", e)
		}
	}
	if strings.Join(rooms, ",") != "news:1,lobby,news:2" {
		t.Errorf("rooms = %v, want news:1, lobby, news:2", rooms)
	}
	_ = s.Close(context.Background())
}
