package transport

// makeRoom applies the outbound queue bounds of o to a frame of size
// bytes about to join q (holding qbytes), for every transport's queue:
// within bounds it returns q as is; over them, with PolicyDropOldest, q
// without as many of its oldest entries as needed (cleared, so they can be
// collected) and how many went; otherwise ok is false and the connection
// must be closed as a slow consumer.
func makeRoom[T any](o *Options, q []T, qbytes, size int, sizeOf func(T) int) (rest []T, restBytes, dropped int, ok bool) {
	over := func() bool { return len(q) >= o.QueueMaxMessages || qbytes+size > o.QueueMaxBytes }
	if !over() {
		return q, qbytes, 0, true
	}
	if o.SlowConsumerPolicy != PolicyDropOldest || size > o.QueueMaxBytes {
		return q, qbytes, 0, false
	}
	var zero T
	for len(q) > 0 && over() {
		qbytes -= sizeOf(q[0])
		q[0] = zero
		q = q[1:]
		dropped++
	}
	return q, qbytes, dropped, true
}

// unwritten returns the rest of the buffer in which a write of n bytes of
// bufs ended, or nil when it ended on a buffer boundary (each buffer is
// one frame, or the rest of one).
func unwritten(bufs [][]byte, n int) []byte {
	for _, b := range bufs {
		if n < len(b) {
			if n == 0 {
				return nil
			}
			return b[n:]
		}
		n -= len(b)
	}
	return nil
}
