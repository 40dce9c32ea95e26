// Package egress is a small Go client for the egress service
// (egress.v1.EgressService): outbound HTTP(S) through egressd's pooled,
// policed connections.
//
//	client, err := egress.Dial("127.0.0.1:50051")
//	resp, err := client.Get(ctx, "https://api.example.com/items")
//	fmt.Println(resp.Status, egress.Header(resp.Headers, "content-type"))
//	if reason := egress.Reason(err); reason == "CONNECT_REFUSED" { ... }
//
// Errors are gRPC status errors; Reason, ErrorInfo and RetryDelay read the
// google.rpc details egressd sends with every error (docs/errors.md lists
// the reasons). A Client may be shared by goroutines.
package egress

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"egress.local/client/go/egressv1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Client calls egressd over one gRPC connection.
type Client struct {
	conn  *grpc.ClientConn
	stub  egressv1.EgressServiceClient
	token string
}

// Dial connects to egressd at target ("host:port", or "dns:///name:port" to
// spread calls over every address). Without options the connection is
// plaintext; pass grpc.WithTransportCredentials for TLS.
func Dial(target string, opts ...grpc.DialOption) (*Client, error) {
	all := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1 << 30)),
	}
	if len(opts) == 0 {
		all = append(all, grpc.WithInsecure())
	}
	if strings.HasPrefix(target, "dns:") {
		all = append(all, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	}
	conn, err := grpc.Dial(target, append(all, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, stub: egressv1.NewEgressServiceClient(conn)}, nil
}

// WithToken sends "authorization: Bearer <token>" with every call.
func (c *Client) WithToken(token string) *Client {
	copied := *c
	copied.token = token
	return &copied
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Stub is the generated client, for what this package does not wrap.
func (c *Client) Stub() egressv1.EgressServiceClient { return c.stub }

func (c *Client) context(ctx context.Context) context.Context {
	if c.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
}

// Do performs one request and returns the whole response: any HTTP status is
// a response, not an error. The context's deadline bounds the call.
func (c *Client) Do(ctx context.Context, req *egressv1.DoRequest) (*egressv1.DoResponse, error) {
	return c.stub.Do(c.context(ctx), req)
}

// Get is Do with GET.
func (c *Client) Get(ctx context.Context, url string) (*egressv1.DoResponse, error) {
	return c.Do(ctx, &egressv1.DoRequest{Method: "GET", Url: url})
}

// Stream performs one request with DoStream: onHead gets the head, then
// onBody each piece of the body as it arrives (an error from it ends the
// call). It returns nil only when the whole body arrived.
func (c *Client) Stream(ctx context.Context, req *egressv1.DoStreamRequest,
	onHead func(*egressv1.ResponseHead), onBody func([]byte) error) error {
	ctx, cancel := context.WithCancel(c.context(ctx))
	defer cancel()
	stream, err := c.stub.DoStream(ctx, req)
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch part := msg.Part.(type) {
		case *egressv1.DoStreamResponse_Head:
			if onHead != nil {
				onHead(part.Head)
			}
		case *egressv1.DoStreamResponse_Body:
			if onBody != nil {
				if err := onBody(part.Body); err != nil {
					return err
				}
			}
		}
	}
}

// Retry asks the service to retry an answer that asks for it (429 or 503
// with Retry-After) up to attempts in all, waiting at most maxWait (0: what
// the deadline allows).
func Retry(attempts int, maxWait time.Duration) *egressv1.RetryPolicy {
	policy := &egressv1.RetryPolicy{MaxAttempts: int32(attempts)}
	if maxWait > 0 {
		policy.MaxWait = durationpb.New(maxWait)
	}
	return policy
}

// Header is the first value of header name (case-insensitive), or "".
func Header(headers []*egressv1.Header, name string) string {
	for _, h := range headers {
		if strings.EqualFold(h.Name, name) {
			if len(h.RawValue) > 0 {
				return string(h.RawValue)
			}
			return h.Value
		}
	}
	return ""
}

// ErrorInfo is the ErrorInfo egressd sent with err, or nil.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	if e, ok := AsError(err); ok {
		err = e
	}
	if s, ok := status.FromError(err); ok {
		for _, d := range s.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				return info
			}
		}
	}
	return nil
}

// Reason is the stable reason of err ("DESTINATION_DENIED",
// "CONNECT_REFUSED", ...), or "".
func Reason(err error) string {
	if info := ErrorInfo(err); info != nil {
		return info.Reason
	}
	return ""
}

// RetryDelay is how long to wait before retrying, where egressd says waiting
// helps (a full queue, a limit, the memory budget); 0 otherwise.
func RetryDelay(err error) time.Duration {
	if e, ok := AsError(err); ok {
		return e.RetryDelay
	}
	if s, ok := status.FromError(err); ok {
		for _, d := range s.Details() {
			if retry, ok := d.(*errdetails.RetryInfo); ok && retry.RetryDelay != nil {
				return time.Duration(retry.RetryDelay.Seconds)*time.Second +
					time.Duration(retry.RetryDelay.Nanos)
			}
		}
	}
	return 0
}
