package dockerrt

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// engine runs one Docker Engine request f under a deadline of d derived from
// ctx. The client library waits as long as its context lets it, so without
// this a hung engine (a frozen daemon, a socket that accepts and never
// answers) would hang rcluster. what names the object and the request
// ("container rcluster-dev-1a2b3c4d-7001: inspect") and prefixes the error;
// when this deadline, not the caller's, ended the request, the error says
// the engine did not answer in time (and still matches
// context.DeadlineExceeded). f may read a streamed answer: the deadline
// covers the whole of f.
func engine[T any](ctx context.Context, d time.Duration, what string, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := f(cctx)
	switch {
	case err == nil:
		return v, nil
	case ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded):
		return v, fmt.Errorf("%s: %w (Docker engine did not answer within %s)", what, context.DeadlineExceeded, d)
	default:
		return v, fmt.Errorf("%s: %w", what, err)
	}
}
