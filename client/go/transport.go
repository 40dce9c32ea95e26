package egress

// Transport: net/http's RoundTripper over egress, so that an http.Client (and
// any SDK that takes one) sends its requests through egressd.

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"egress.local/client/go/egressv1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMaxRequestBytes is egressd's default --max_request_bytes.
const DefaultMaxRequestBytes = 16 << 20

// Transport is an http.RoundTripper that performs each request with one
// DoStream call:
//
//	client, _ := egress.Dial("127.0.0.1:50051")
//	httpClient := &http.Client{Transport: &egress.Transport{Client: client}}
//
// The response head returns as soon as egressd has it and the body streams as
// it arrives; closing the body (or the request's context ending) cancels the
// call, and egressd aborts the upstream exchange. As net/http's Transport, it
// asks for gzip and decodes it unless DisableCompression is set or the caller
// sets Accept-Encoding, and adds a User-Agent when none is set. Redirects,
// cookies and http.Client.Timeout stay http.Client's job. Errors: a connect
// failure is a *net.OpError (Op "dial"), egress's timeouts are net.Errors
// whose Timeout() is true (the context's own error when it ended), and
// everything else an *Error; each carries egress's Reason (AsError).
type Transport struct {
	Client *Client
	// MaxRequestBytes is egress's request limit (0: DefaultMaxRequestBytes):
	// a bigger body fails here, before any call.
	MaxRequestBytes int64
	// DisableCompression: no Accept-Encoding: gzip added, no decoding.
	DisableCompression bool
}

// Error is a failed exchange as egressd reported it.
type Error struct {
	Code       codes.Code
	Message    string
	Reason     string            // "CONNECT_REFUSED", ...: docs/errors.md
	Metadata   map[string]string // origin, address, limit, ...
	RetryDelay time.Duration     // where waiting helps; 0 otherwise
	status     *status.Status
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("egress: %s (%s)", e.Message, e.Reason)
	}
	return "egress: " + e.Message
}

// Timeout says whether the exchange ran out of time (net.Error).
func (e *Error) Timeout() bool {
	switch e.Reason {
	case "CONNECT_TIMEOUT", "UPSTREAM_TIMEOUT", "STREAM_IDLE", "DEADLINE_EXCEEDED":
		return true
	}
	return e.Reason == "" && e.Code == codes.DeadlineExceeded
}

// Temporary says whether waiting may help (net.Error).
func (e *Error) Temporary() bool { return e.RetryDelay > 0 || e.Timeout() }

// GRPCStatus makes status.FromError, Reason and RetryDelay work on it.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Unwrap: a body cut short is io.ErrUnexpectedEOF, as net/http says it.
func (e *Error) Unwrap() error {
	if e.Reason == "BODY_INCOMPLETE" || e.Reason == "UPSTREAM_RESET" {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// AsError finds the *Error in err (inside a *url.Error or *net.OpError).
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func newError(err error) *Error {
	s := status.Convert(err)
	e := &Error{Code: s.Code(), Message: s.Message(), status: s}
	for _, d := range s.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Metadata = d.Reason, d.Metadata
		case *errdetails.RetryInfo:
			if d.RetryDelay != nil {
				e.RetryDelay = d.RetryDelay.AsDuration()
			}
		}
	}
	return e
}

// A DEADLINE_EXCEEDED from egressd this close to the context's deadline is
// the context's.
const contextDeadlineSlack = 50 * time.Millisecond

// transportError is what a failed call becomes: the context's own error when
// it ended, a *net.OpError for a connect failure, else the *Error.
func transportError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	e := newError(err)
	// gRPC's own timer for the context's deadline can fire before the
	// context's: a deadline with no reason from egressd is the context's. So
	// is egressd's own (UPSTREAM_TIMEOUT, ...) when it came with the
	// context's deadline, which egressd got as the call's and keeps a moment
	// earlier than the context (the time the call took to reach it).
	if deadline, ok := ctx.Deadline(); ok && e.Code == codes.DeadlineExceeded &&
		(e.Reason == "" || time.Until(deadline) < contextDeadlineSlack) {
		return context.DeadlineExceeded
	}
	switch e.Reason {
	case "DNS_FAILED", "CONNECT_REFUSED", "CONNECT_TIMEOUT", "TLS_VERIFY_FAILED",
		"TLS_HANDSHAKE_FAILED":
		return &net.OpError{Op: "dial", Net: "tcp", Addr: address(e.Metadata["address"]), Err: e}
	}
	return e
}

type address string

func (a address) Network() string { return "tcp" }
func (a address) String() string  { return string(a) }

// Headers egress owns: hop-by-hop ones, Host (the URL names the origin) and
// the body's framing.
var owned = map[string]bool{"Connection": true, "Keep-Alive": true, "Te": true,
	"Trailer": true, "Upgrade": true, "Transfer-Encoding": true, "Host": true,
	"Content-Length": true}

func requestHeaders(h http.Header) []*egressv1.Header {
	names := make([]string, 0, len(h))
	for name := range h {
		canonical := http.CanonicalHeaderKey(name)
		if !owned[canonical] && !strings.HasPrefix(canonical, "Proxy-") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []*egressv1.Header
	for _, name := range names {
		for _, v := range h[name] {
			if utf8.ValidString(v) {
				out = append(out, &egressv1.Header{Name: name, Value: v})
			} else {
				out = append(out, &egressv1.Header{Name: name, RawValue: []byte(v)})
			}
		}
	}
	return out
}

// RoundTrip performs one request (http.RoundTripper). It closes req.Body.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := t.readBody(req)
	if err != nil {
		return nil, err
	}
	header := req.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	if _, ok := header["User-Agent"]; !ok {
		header.Set("User-Agent", "Go-http-client/1.1")
	}
	askedGzip := false
	if !t.DisableCompression && header.Get("Accept-Encoding") == "" &&
		header.Get("Range") == "" && req.Method != http.MethodHead {
		askedGzip = true
		header.Set("Accept-Encoding", "gzip")
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	// User info is never sent in the URL: http.Client has made it an
	// Authorization header already, as net/http's Transport expects.
	target := *req.URL
	target.User = nil
	ctx, cancel := context.WithCancel(req.Context())
	stream, err := t.Client.stub.DoStream(t.Client.context(ctx), &egressv1.DoStreamRequest{
		Method: method, Url: target.String(), Headers: requestHeaders(header), Body: body,
	})
	if err != nil {
		cancel()
		return nil, transportError(req.Context(), err)
	}
	first, err := stream.Recv()
	if err == nil && first.GetHead() == nil {
		err = status.Error(codes.Internal, "the stream began without a head")
	}
	if err != nil {
		cancel()
		return nil, transportError(req.Context(), err)
	}
	head := first.GetHead()
	resp := &http.Response{
		Status:        fmt.Sprintf("%d %s", head.Status, http.StatusText(int(head.Status))),
		StatusCode:    int(head.Status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{},
		ContentLength: -1,
		Request:       req,
	}
	for _, h := range head.Headers {
		v := h.Value
		if len(h.RawValue) > 0 {
			v = string(h.RawValue)
		}
		resp.Header.Add(h.Name, v)
	}
	if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		resp.ContentLength = n
	}
	noBody := method == http.MethodHead || head.Status == http.StatusNoContent ||
		head.Status == http.StatusNotModified || (head.Status >= 100 && head.Status < 200)
	if noBody {
		cancel()
		resp.Body = http.NoBody
		if method != http.MethodHead { // a HEAD's Content-Length is the GET's
			resp.ContentLength = 0
		}
		return resp, nil
	}
	var reader io.ReadCloser = &streamBody{ctx: req.Context(), stream: stream, cancel: cancel}
	if askedGzip && strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		reader = &gzipBody{body: reader}
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Uncompressed = true
	}
	resp.Body = reader
	return resp, nil
}

func (t *Transport) readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	limit := t.MaxRequestBytes
	if limit <= 0 {
		limit = DefaultMaxRequestBytes
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("egress: the request body is over %d bytes, egress's request "+
			"limit (Transport.MaxRequestBytes)", limit)
	}
	return body, nil
}

// streamBody reads DoStream's body pieces; Close cancels the call.
type streamBody struct {
	ctx    context.Context
	stream egressv1.EgressService_DoStreamClient
	cancel context.CancelFunc
	mu     sync.Mutex
	piece  []byte
	err    error
}

var errClosed = errors.New("egress: read on closed response body")

func (b *streamBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.piece) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		msg, err := b.stream.Recv()
		switch {
		case err == io.EOF:
			b.err = io.EOF
			b.cancel()
		case err != nil:
			b.err = transportError(b.ctx, err)
			b.cancel()
		default:
			b.piece = msg.GetBody()
		}
	}
	n := copy(p, b.piece)
	b.piece = b.piece[n:]
	return n, nil
}

func (b *streamBody) Close() error {
	b.cancel()
	b.mu.Lock()
	if b.err == nil || b.err == io.EOF {
		b.err = errClosed
	}
	b.piece = nil
	b.mu.Unlock()
	return nil
}

// gzipBody decodes on first read, as net/http's Transport does.
type gzipBody struct {
	body io.ReadCloser
	zr   *gzip.Reader
	err  error
}

func (g *gzipBody) Read(p []byte) (int, error) {
	if g.zr == nil && g.err == nil {
		g.zr, g.err = gzip.NewReader(g.body)
	}
	if g.err != nil {
		return 0, g.err
	}
	return g.zr.Read(p)
}

func (g *gzipBody) Close() error { return g.body.Close() }
