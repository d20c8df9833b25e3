package transport

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"

	"github.com/klauspost/compress/flate"

	"github.com/lxzan/gws"
	"github.com/switchboard-rt/switchboard/protocol"
)

// closeCodeOf names the close: ours if we sent one, the peer's close
// frame, or 1006 when the connection just ended.
func closeCodeOf(d *protocol.Disconnect, err error) (protocol.CloseCode, string) {
	if d != nil {
		return d.Code, d.Reason
	}
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		if ce.Code == 0 { // a close frame without a status: RFC 6455 reports that as 1005
			return 1005, "closed without a status code"
		}
		return protocol.CloseCode(ce.Code), string(ce.Reason)
	}
	var sc interface{ Uint16() uint16 }
	if errors.As(err, &sc) {
		return protocol.CloseCode(sc.Uint16()), err.Error()
	}
	var ge *guardError
	if errors.As(err, &ge) {
		return ge.code, ge.msg
	}
	var corrupt flate.CorruptInputError
	switch {
	case errors.As(err, &corrupt):
		return protocol.CloseInvalidPayload, err.Error()
	case errors.Is(err, gws.ErrTextEncoding):
		return protocol.CloseInvalidPayload, err.Error()
	case err == nil, errors.Is(err, io.EOF):
		return 1006, "connection closed without a close frame"
	}
	return 1006, err.Error()
}

// fixCloseCode corrects a gws quirk: every failure to inflate a compressed
// message is closed with 1011 (server error, "reconnect"). One that
// inflates past the read limit gets 1009, as every oversize message does;
// corrupt compressed data is the client's invalid payload, 1007. A
// frameGuard error, which gws closes with 1000, gets the guard's code.
func fixCloseCode(p []byte) {
	if len(p) < 4 || p[0] != 0x80|opClose || p[1]&0x80 != 0 {
		return
	}
	n := int(p[1] & 0x7F)
	if n < 2 || len(p) < 2+n {
		return
	}
	if code, ok := guardCode(string(p[4 : 2+n])); ok { // gws sent 1000 for a frameGuard error
		binary.BigEndian.PutUint16(p[2:], uint16(code))
		return
	}
	if binary.BigEndian.Uint16(p[2:]) != uint16(protocol.CloseInternalError) {
		return
	}
	switch reason := string(p[4 : 2+n]); {
	case reason == gws.ErrMessageTooLarge.Error():
		binary.BigEndian.PutUint16(p[2:], uint16(protocol.CloseMessageTooBig))
	case strings.HasPrefix(reason, "flate: corrupt input"):
		binary.BigEndian.PutUint16(p[2:], uint16(protocol.CloseInvalidPayload))
	}
}
