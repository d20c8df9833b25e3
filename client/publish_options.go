package client

// PublishOption changes one Publish.
type PublishOption func(*publishOptions)

type publishOptions struct {
	excludeSelf bool
}

// ExcludeSelf leaves this client's own connection out of the event: every
// other member of the room receives it, and Publish still returns the ack.
// It is what the seeds' server-side broadcast(..., exclude=websocket) does
// for a message a client sent (the protocol's exclude_self).
func ExcludeSelf() PublishOption {
	return func(o *publishOptions) { o.excludeSelf = true }
}
