package egress_test

// The Go client against a real egressd ($EGRESSD, started here on 127.0.0.1
// with an ephemeral port) and a loopback upstream (net/http/httptest).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	egress "egress.local/client/go"
	"egress.local/client/go/egressv1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	client   *egress.Client
	upstream *httptest.Server
)

func TestMain(m *testing.M) {
	binary := os.Getenv("EGRESSD")
	if binary == "" {
		fmt.Fprintln(os.Stderr, "set EGRESSD to the egressd binary")
		os.Exit(1)
	}
	// A control-frame rate far below the default (burst 100): grpc-go's
	// BDP pings, one per burst of data received, must not count
	// (TestManyCallsOnOneConnectionAreNotAFlood).
	cmd := exec.Command(binary, "--listen=127.0.0.1:0", "--metrics_listen=",
		"--allow_cidrs=127.0.0.0/8,::1/128", "--allow_ports=*",
		"--max_control_frames_per_second=10")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	port := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`serving gRPC on port (\d+)`)
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			if m := re.FindStringSubmatch(scanner.Text()); m != nil {
				port <- m[1]
			}
		}
	}()
	select {
	case p := <-port:
		var err error
		if client, err = egress.Dial("127.0.0.1:" + p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "egressd did not start")
		cmd.Process.Kill()
		os.Exit(1)
	}
	upstream = httptest.NewServer(http.HandlerFunc(serve))
	code := m.Run()
	client.Close()
	upstream.Close()
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	os.Exit(code)
}

var (
	busyMu   sync.Mutex
	busySeen = map[string]bool{}
)

func serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/sse":
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	case strings.HasPrefix(r.URL.Path, "/busy-once/"):
		busyMu.Lock()
		first := !busySeen[r.URL.Path]
		busySeen[r.URL.Path] = true
		busyMu.Unlock()
		if first {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, "ok")
	default:
		w.Header().Set("X-Path", r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "not found")
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestGetReturnsTheUpstreamAnswerAndTiming(t *testing.T) {
	resp, err := client.Get(ctx(t), upstream.URL+"/missing")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 404 || string(resp.Body) != "not found" {
		t.Fatalf("got %d %q", resp.Status, resp.Body)
	}
	if got := egress.Header(resp.Headers, "x-path"); got != "/missing" {
		t.Errorf("X-Path %q", got)
	}
	timing := resp.Timing
	if timing.RemoteAddress != "127.0.0.1" || timing.FirstByte.AsDuration() <= 0 ||
		timing.Dns == nil || timing.Attempts != 1 {
		t.Errorf("timing %v", timing)
	}
}

func TestStreamDeliversTheHeadThenTheBody(t *testing.T) {
	var head *egressv1.ResponseHead
	var body []byte
	err := client.Stream(ctx(t), &egressv1.DoStreamRequest{Url: upstream.URL + "/sse"},
		func(h *egressv1.ResponseHead) { head = h },
		func(piece []byte) error { body = append(body, piece...); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if head == nil || head.Status != 200 ||
		egress.Header(head.Headers, "content-type") != "text/event-stream" {
		t.Fatalf("head %v", head)
	}
	if string(body) != "data: 0\n\ndata: 1\n\ndata: 2\n\n" {
		t.Fatalf("body %q", body)
	}
}

func TestErrorsCarryTheirReason(t *testing.T) {
	_, err := client.Get(ctx(t), "http://10.0.0.1/")
	if status.Code(err) != codes.PermissionDenied || egress.Reason(err) != "DESTINATION_DENIED" {
		t.Errorf("got %v (%q)", err, egress.Reason(err))
	}
	if info := egress.ErrorInfo(err); info == nil || info.Domain != "egress.local" ||
		info.Metadata["rule"] == "" {
		t.Errorf("ErrorInfo %v", info)
	}

	_, err = client.Get(ctx(t), "ftp://example.com/")
	if egress.Reason(err) != "INVALID_REQUEST" {
		t.Errorf("got %v", err)
	}
	var field string
	if s, ok := status.FromError(err); ok {
		for _, d := range s.Details() {
			if bad, ok := d.(*errdetails.BadRequest); ok {
				field = bad.FieldViolations[0].Field
			}
		}
	}
	if field != "url" {
		t.Errorf("BadRequest field %q", field)
	}

	listener, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := listener.Addr().String()
	listener.Close()
	_, err = client.Get(ctx(t), "http://"+closed+"/")
	if status.Code(err) != codes.Unavailable || egress.Reason(err) != "CONNECT_REFUSED" ||
		egress.ErrorInfo(err).Metadata["address"] != "127.0.0.1" {
		t.Errorf("got %v (%v)", err, egress.ErrorInfo(err))
	}
	if egress.RetryDelay(err) != 0 {
		t.Errorf("a refused connect has no RetryInfo")
	}
}

func TestAnAnswerThatAsksForARetryIsRetriedWhenAsked(t *testing.T) {
	resp, err := client.Get(ctx(t), upstream.URL+"/busy-once/a")
	if err != nil || resp.Status != 429 {
		t.Fatalf("not opted in: %v %v", resp, err)
	}
	resp, err = client.Do(ctx(t), &egressv1.DoRequest{
		Url: upstream.URL + "/busy-once/b", Retry: egress.Retry(2, time.Second)})
	if err != nil || resp.Status != 200 || resp.Timing.Attempts != 2 {
		t.Fatalf("got %v %v", resp, err)
	}
}

// grpc-go sends a PING for bandwidth estimation per burst of data it
// receives; egressd's guard must not take a busy client for a PING flood.
// 3,000 calls on the one connection, Do and through egress.Transport, with
// --max_control_frames_per_second=10 (a burst of 100).
func TestManyCallsOnOneConnectionAreNotAFlood(t *testing.T) {
	hc := &http.Client{Transport: &egress.Transport{Client: client}}
	for i := 0; i < 1500; i++ {
		if _, err := client.Get(ctx(t), upstream.URL+"/many"); err != nil {
			t.Fatalf("Do %d: %v", i, err)
		}
		resp, err := hc.Get(upstream.URL + "/many")
		if err != nil {
			t.Fatalf("Transport %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
