// Example: GET a URL through egressd, print where the time went, and stream
// it again.
//
//	go run ./example 127.0.0.1:50051 https://example.com/
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	egress "egress.local/client/go"
	"egress.local/client/go/egressv1"
	"google.golang.org/grpc/status"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: example EGRESSD_ADDRESS URL")
		os.Exit(2)
	}
	client, err := egress.Dial(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := client.Do(ctx, &egressv1.DoRequest{
		Method: "GET", Url: os.Args[2], Retry: egress.Retry(3, 5*time.Second)})
	if err != nil {
		s, _ := status.FromError(err)
		fmt.Fprintf(os.Stderr, "%s (%s): %s\n", s.Code(), egress.Reason(err), s.Message())
		os.Exit(1)
	}
	t := resp.Timing
	fmt.Printf("%d %s, %d bytes from %s:%d; dns %v connect %v tls %v first byte %v\n",
		resp.Status, egress.Header(resp.Headers, "content-type"), len(resp.Body),
		t.RemoteAddress, t.RemotePort, t.Dns.AsDuration(), t.Connect.AsDuration(),
		t.Tls.AsDuration(), t.FirstByte.AsDuration())
	err = client.Stream(ctx, &egressv1.DoStreamRequest{Method: "GET", Url: os.Args[2]}, nil,
		func(piece []byte) error { _, err := os.Stdout.Write(piece); return err })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
