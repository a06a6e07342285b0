package api

import (
	"context"
	"os"
)

// ctxErr maps a finished context to the error package net reports.
func ctxErr(ctx context.Context) error {
	if ctx.Err() == context.DeadlineExceeded {
		return os.ErrDeadlineExceeded
	}
	return ctx.Err()
}

// ListenBacklog is the accept queue length of listeners: Linux's default
// somaxconn.
const ListenBacklog = 4096
