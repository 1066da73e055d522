package parleypb

import "fmt"

// CloseError is how a connection ended, or is to end: its close code and the
// reason in the close frame. The server closes a session with one; the Go
// client returns one from Err once the server has closed the connection.
type CloseError struct {
	Code   CloseCode
	Reason string
}

// Close returns a CloseError for code and reason.
func Close(code CloseCode, reason string) *CloseError {
	return &CloseError{Code: code, Reason: reason}
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("connection closed with %d (%s)", int32(e.Code), e.Code.Name())
	}
	return fmt.Sprintf("connection closed with %d (%s): %s", int32(e.Code), e.Code.Name(), e.Reason)
}

// Name is the code's short name ("TRY_AGAIN_LATER"), or its number when the
// code is not one of Parley's.
func (c CloseCode) Name() string {
	if n, ok := CloseCode_name[int32(c)]; ok {
		return n[len("CLOSE_CODE_"):]
	}
	return fmt.Sprint(int32(c))
}
