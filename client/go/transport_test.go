package egress_test

// egress.Transport with net/http's http.Client: every case of
// tests/client/conformance.json ($CONFORMANCE), against the egressd, httpbin
// and extras that tests/client/conformance_servers.py started (its
// environment), then httputil.DumpResponse and a streamed body.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	egress "egress.local/client/go"
)

type conformanceCase struct {
	Name    string `json:"name"`
	Request struct {
		Method          string                                     `json:"method"`
		URL             string                                     `json:"url"`
		Headers         [][2]string                                `json:"headers"`
		Body            *string                                    `json:"body"`
		BodyChunks      []string                                   `json:"body_chunks"`
		Multipart       *struct{ Field, Filename, Content string } `json:"multipart"`
		TimeoutS        float64                                    `json:"timeout_s"`
		BasicAuth       []string                                   `json:"basic_auth"`
		Cookies         bool                                       `json:"cookies"`
		FollowRedirects *bool                                      `json:"follow_redirects"`
	} `json:"request"`
	Expect map[string]json.RawMessage `json:"expect"`
	Skip   map[string]string          `json:"skip"`
}

func env(t *testing.T, name string) string {
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("$%s is not set: run under tests/client/conformance_servers.py", name)
	}
	return v
}

func expand(t *testing.T, s, id string) string {
	return strings.NewReplacer("{httpbin}", env(t, "HTTPBIN"), "{extras}", env(t, "EXTRAS"),
		"{refused}", env(t, "REFUSED"), "{denied}", env(t, "DENIED"), "{id}", id).Replace(s)
}

func transportClient(t *testing.T) *egress.Client {
	c, err := egress.Dial(env(t, "EGRESS_TARGET"))
	if err != nil {
		t.Fatal(err)
	}
	return c.WithToken(env(t, "EGRESS_TOKEN"))
}

func rssMB() float64 {
	data, _ := os.ReadFile("/proc/self/statm")
	fields := strings.Fields(string(data))
	pages, _ := strconv.ParseFloat(fields[1], 64)
	return pages * float64(os.Getpagesize()) / (1 << 20)
}

func direct(url string) string {
	resp, err := http.Get(url) // not through egress: stats and metrics
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

var inFlight = regexp.MustCompile(`(?m)^egress_requests_in_flight(?:\{[^}]*\})? (\S+)$`)

func waitCancelled(t *testing.T, id string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := inFlight.FindStringSubmatch(direct(env(t, "EGRESS_METRICS")))
		if strings.Contains(direct(env(t, "EXTRAS")+"/stats?id="+id), `"closed"`) &&
			m != nil && m[1] == "0" {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func TestConformance(t *testing.T) {
	data, err := os.ReadFile(env(t, "CONFORMANCE"))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Cases []conformanceCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"status": true, "body": true, "body_empty": true, "json": true,
		"headers": true, "header_bytes": true, "body_bytes": true, "rss_growth_mb": true,
		"events": true, "spread_ms": true, "error": true, "reason": true, "redirects": true,
		"cancel": true}
	ec := transportClient(t)
	defer ec.Close()
	for n, c := range list.Cases {
		c, id := c, fmt.Sprintf("go-%d", n)
		for key := range c.Expect {
			if !known[key] {
				t.Fatalf("conformance.json: %s: unknown expect key %q", c.Name, key)
			}
		}
		t.Run(c.Name, func(t *testing.T) {
			if why, ok := c.Skip["go"]; ok {
				t.Skip(why)
			}
			runCase(t, ec, c, id)
		})
	}
}

func runCase(t *testing.T, ec *egress.Client, c conformanceCase, id string) {
	var expect struct {
		Status      int                    `json:"status"`
		Body        *string                `json:"body"`
		BodyEmpty   bool                   `json:"body_empty"`
		JSON        map[string]interface{} `json:"json"`
		Headers     map[string][]string    `json:"headers"`
		HeaderBytes map[string]string      `json:"header_bytes"`
		BodyBytes   int64                  `json:"body_bytes"`
		RSSGrowthMB float64                `json:"rss_growth_mb"`
		Events      int                    `json:"events"`
		SpreadMS    float64                `json:"spread_ms"`
		Error       string                 `json:"error"`
		Reason      string                 `json:"reason"`
		Redirects   *int                   `json:"redirects"`
		Cancel      bool                   `json:"cancel"`
	}
	raw, _ := json.Marshal(c.Expect)
	if err := json.Unmarshal(raw, &expect); err != nil {
		t.Fatal(err)
	}
	redirects := 0
	hc := &http.Client{Transport: &egress.Transport{Client: ec},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			redirects = len(via)
			if c.Request.FollowRedirects != nil && !*c.Request.FollowRedirects {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	if c.Request.Cookies {
		hc.Jar, _ = cookiejar.New(nil)
	}
	if c.Request.TimeoutS > 0 {
		hc.Timeout = time.Duration(c.Request.TimeoutS * float64(time.Second))
	}
	var body io.Reader
	contentType := ""
	switch {
	case c.Request.Body != nil:
		body = strings.NewReader(*c.Request.Body)
	case c.Request.BodyChunks != nil:
		var readers []io.Reader
		for _, piece := range c.Request.BodyChunks {
			readers = append(readers, strings.NewReader(piece))
		}
		body = io.MultiReader(readers...) // a length net/http does not know
	case c.Request.Multipart != nil:
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		part, _ := w.CreateFormFile(c.Request.Multipart.Field, c.Request.Multipart.Filename)
		part.Write([]byte(c.Request.Multipart.Content))
		w.Close()
		body, contentType = &buf, w.FormDataContentType()
	}
	method := c.Request.Method
	if method == "" {
		method = "GET"
	}
	req, err := http.NewRequest(method, expand(t, c.Request.URL, id), body)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Request.Headers {
		req.Header.Add(h[0], h[1])
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Request.BasicAuth != nil {
		req.SetBasicAuth(c.Request.BasicAuth[0], c.Request.BasicAuth[1])
	}
	resp, err := hc.Do(req)
	if expect.Error != "" {
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got %s, want a %s error", resp.Status, expect.Error)
		}
		var netErr net.Error
		var opErr *net.OpError
		var egressErr *egress.Error
		got := "other"
		switch {
		case errors.As(err, &netErr) && netErr.Timeout():
			got = "timeout"
		case errors.As(err, &opErr) && opErr.Op == "dial":
			got = "connect"
		case errors.As(err, &egressErr):
			got = "egress"
		}
		if got != expect.Error {
			t.Fatalf("error %v (%T) is %s, want %s", err, err, got, expect.Error)
		}
		if expect.Reason != "" && egress.Reason(err) != expect.Reason {
			t.Fatalf("reason %q, want %q (%v)", egress.Reason(err), expect.Reason, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != expect.Status {
		t.Fatalf("status %d, want %d", resp.StatusCode, expect.Status)
	}
	for name, want := range expect.Headers {
		if got := resp.Header.Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	for name, want := range expect.HeaderBytes {
		if got := hex.EncodeToString([]byte(resp.Header.Get(name))); got != want {
			t.Errorf("%s bytes: %s, want %s", name, got, want)
		}
	}
	if expect.Redirects != nil && redirects != *expect.Redirects {
		t.Errorf("%d redirects, want %d", redirects, *expect.Redirects)
	}
	switch {
	case expect.Cancel:
		if _, err := resp.Body.Read(make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !waitCancelled(t, id) {
			t.Fatal("after Close, the upstream connection stayed open or a call stayed in flight")
		}
	case expect.Events > 0:
		var times []time.Time
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			if strings.HasPrefix(scanner.Text(), "data:") {
				times = append(times, time.Now())
			}
		}
		if len(times) != expect.Events {
			t.Fatalf("%d events, want %d (%v)", len(times), expect.Events, scanner.Err())
		}
		if spread := times[len(times)-1].Sub(times[0]); spread.Seconds()*1000 < expect.SpreadMS {
			t.Fatalf("events spread over %v: the body was not streamed", spread)
		}
	case expect.BodyBytes > 0:
		start, peak, total := rssMB(), 0.0, int64(0)
		buf := make([]byte, 64<<10)
		for i := 0; ; i++ {
			n, err := resp.Body.Read(buf)
			total += int64(n)
			if i%32 == 0 && rssMB()-start > peak {
				peak = rssMB() - start
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if total != expect.BodyBytes || peak >= expect.RSSGrowthMB {
			t.Fatalf("%d bytes (want %d), RSS grew %.1f MiB (limit %.0f)", total,
				expect.BodyBytes, peak, expect.RSSGrowthMB)
		}
	default:
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if expect.BodyEmpty && len(data) != 0 {
			t.Errorf("body %q, want none", data)
		}
		if expect.Body != nil && string(data) != *expect.Body {
			t.Errorf("body %q, want %q", data, *expect.Body)
		}
		if expect.JSON != nil {
			var doc map[string]interface{}
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatalf("%v: %s", err, data)
			}
			for path, want := range expect.JSON {
				var node interface{} = doc
				for _, part := range strings.Split(path, ".") {
					node = node.(map[string]interface{})[part]
				}
				if s, ok := want.(string); ok {
					want = expand(t, s, id)
				}
				if fmt.Sprint(node) != fmt.Sprint(want) {
					t.Errorf("%s: %v, want %v", path, node, want)
				}
			}
		}
	}
}

// What a Go program does with it: httputil.DumpResponse, a streamed body
// read as it arrives, a context that cancels, and egress's reason kept.
func TestTransportWithHTTPClient(t *testing.T) {
	ec := transportClient(t)
	defer ec.Close()
	hc := &http.Client{Transport: &egress.Transport{Client: ec}}

	resp, err := hc.Get(env(t, "HTTPBIN") + "/response-headers?X-Rep=a&X-Rep=b")
	if err != nil {
		t.Fatal(err)
	}
	dump, err := httputil.DumpResponse(resp, true)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(dump, []byte("HTTP/1.1 200 OK\r\n")) ||
		!bytes.Contains(dump, []byte("X-Rep: a\r\nX-Rep: b\r\n")) ||
		!bytes.Contains(dump, []byte(`"X-Rep":["a","b"]`)) {
		t.Fatalf("DumpResponse:\n%s", dump)
	}

	// The SSE events arrive as they are sent, 300 ms apart.
	resp, err = hc.Get(env(t, "EXTRAS") + "/sse?n=3&gap_ms=300")
	if err != nil {
		t.Fatal(err)
	}
	reader := bufio.NewReader(resp.Body)
	start := time.Now()
	var arrivals []time.Duration
	for {
		line, err := reader.ReadString('\n')
		if strings.HasPrefix(line, "data:") {
			arrivals = append(arrivals, time.Since(start))
		}
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	if len(arrivals) != 3 || arrivals[2]-arrivals[0] < 500*time.Millisecond {
		t.Fatalf("events at %v: not streamed", arrivals)
	}

	// A context that ends mid-body ends the read with its error.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", env(t, "EXTRAS")+"/endless?id=go-ctx", nil)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read ended with %v, want the context's deadline", err)
	}
	if !waitCancelled(t, "go-ctx") {
		t.Fatal("the upstream exchange outlived the context")
	}

	// A policy refusal keeps its reason and is no connect error.
	_, err = hc.Get(env(t, "DENIED") + "/")
	var opErr *net.OpError
	if egress.Reason(err) != "DESTINATION_DENIED" || errors.As(err, &opErr) {
		t.Fatalf("%v: reason %q", err, egress.Reason(err))
	}
	// A body over the limit fails before any call.
	small := &http.Client{Transport: &egress.Transport{Client: ec, MaxRequestBytes: 4}}
	if _, err := small.Post(env(t, "HTTPBIN")+"/post", "text/plain",
		strings.NewReader("12345")); err == nil || !strings.Contains(err.Error(), "over 4 bytes") {
		t.Fatalf("got %v", err)
	}
}
