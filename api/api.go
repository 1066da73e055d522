// Package api serves Parley's server API (proto/api/api.proto) to
// applications' backends: one Connect handler that speaks gRPC, gRPC-Web
// and Connect's HTTP/JSON, behind API keys (keys.go). Each method is a call
// to the node (actors.Node), which asks the room, presence or store that
// owns the answer; this package only checks the caller, translates and
// maps errors to Connect codes. It never touches a socket.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/parleychat/parley/actors"
	parleypb "github.com/parleychat/parley/proto"
	apiv1 "github.com/parleychat/parley/proto/api"
	"github.com/parleychat/parley/proto/api/apiv1connect"
)

// Options configure the API.
type Options struct {
	// Keys are the API keys callers must present; a nil or empty Keys
	// refuses every call (Unauthenticated).
	Keys *Keys
	// Timeout bounds one call that waits on actors (a room's commit, a
	// cluster-wide question). Zero means 10s.
	Timeout time.Duration
	// Observe, when set, is told of every call: its method, its Connect
	// code ("ok" for none) and how long it took (metrics).
	Observe func(method, code string, took time.Duration)
	Logger  *slog.Logger
}

// Handler returns the path the API is served under and its handler.
func Handler(node *actors.Node, o Options) (string, http.Handler) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	s := &service{node: node, o: o}
	return apiv1connect.NewParleyServiceHandler(s, connect.WithInterceptors(s.interceptor()))
}

type service struct {
	apiv1connect.UnimplementedParleyServiceHandler // none is: the test calls every method
	node                                           *actors.Node
	o                                              Options
}

// interceptor checks the API key, bounds the call, maps errors, observes
// and logs it. The key itself is never logged: only the name it was given
// in the key file.
func (s *service) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			method := req.Spec().Procedure
			name, ok := s.o.Keys.Check(req.Header().Get("Authorization"))
			var resp connect.AnyResponse
			var err error
			if !ok {
				err = connect.NewError(connect.CodeUnauthenticated, errors.New("a valid API key is required: Authorization: Bearer <key>"))
				s.o.Logger.Warn("server API: call refused: no valid API key", "method", method, "peer", req.Peer().Addr)
			} else {
				ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
				resp, err = next(ctx, req)
				cancel()
				err = connectError(err)
			}
			code := "ok"
			if err != nil {
				code = connect.CodeOf(err).String()
			}
			if ok {
				level := slog.LevelDebug
				if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
					level = slog.LevelInfo
				}
				s.o.Logger.Log(ctx, level, "server API call", "method", method, "key", name, "code", code, "took", time.Since(start).Round(time.Microsecond))
			}
			if s.o.Observe != nil {
				s.o.Observe(method, code, time.Since(start))
			}
			return resp, err
		}
	}
}

// connectError maps a node's error to a Connect error with a parley.v1.Error
// detail (Parley's own code, which clients of the wire protocol know too).
func connectError(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	var re *actors.RequestError
	switch {
	case errors.As(err, &re):
		e := connect.NewError(codeOf(re.Code), errors.New(re.Text))
		if d, derr := connect.NewErrorDetail(&parleypb.Error{Code: re.Code, Text: re.Text}); derr == nil {
			e.AddDetail(d)
		}
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeUnavailable, errors.New("the room did not answer in time; retry (a publish with the same idempotency key is stored once)"))
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// codeOf is the Connect code of each of Parley's error codes.
func codeOf(c parleypb.ErrorCode) connect.Code {
	switch c {
	case parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, parleypb.ErrorCode_ERROR_CODE_TOO_LONG, parleypb.ErrorCode_ERROR_CODE_INVALID_NAME:
		return connect.CodeInvalidArgument
	case parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, parleypb.ErrorCode_ERROR_CODE_NOT_YOURS, parleypb.ErrorCode_ERROR_CODE_NOT_ALLOWED:
		return connect.CodePermissionDenied
	case parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE:
		return connect.CodeNotFound
	case parleypb.ErrorCode_ERROR_CODE_ROOM_EXISTS:
		return connect.CodeAlreadyExists
	case parleypb.ErrorCode_ERROR_CODE_BANNED, parleypb.ErrorCode_ERROR_CODE_MUTED, parleypb.ErrorCode_ERROR_CODE_ALREADY_DELETED:
		return connect.CodeFailedPrecondition
	case parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED, parleypb.ErrorCode_ERROR_CODE_ROOM_FULL:
		return connect.CodeResourceExhausted
	case parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return connect.CodeUnavailable
	}
	return connect.CodeInternal
}

func (s *service) Publish(ctx context.Context, req *connect.Request[apiv1.PublishRequest]) (*connect.Response[apiv1.PublishResponse], error) {
	m := req.Msg
	seq, err := s.node.Publish(ctx, m.GetRoom(), actors.Sender{Name: m.GetSender(), Kind: m.GetSenderKind()}, m.GetText(), m.GetIdempotencyKey())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.PublishResponse{Seq: seq}), nil
}

// historyLimit is a history page's size: 0 means 50, at most 256.
func historyLimit(n uint32) int {
	if n == 0 {
		return 50
	}
	return int(min(n, 256))
}

func (s *service) GetHistory(ctx context.Context, req *connect.Request[apiv1.GetHistoryRequest]) (*connect.Response[apiv1.GetHistoryResponse], error) {
	m := req.Msg
	events, more, err := s.node.History(ctx, m.GetRoom(), m.GetBeforeSeq(), historyLimit(m.GetLimit()))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.GetHistoryResponse{Events: events, HasMore: more}), nil
}

func (s *service) DeleteMessage(ctx context.Context, req *connect.Request[apiv1.DeleteMessageRequest]) (*connect.Response[apiv1.DeleteMessageResponse], error) {
	m := req.Msg
	seq, err := s.node.DeleteMessage(ctx, m.GetRoom(), m.GetSeq(), m.GetReason(), m.GetIdempotencyKey())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.DeleteMessageResponse{Seq: seq}), nil
}

func (s *service) GetMessage(ctx context.Context, req *connect.Request[apiv1.GetMessageRequest]) (*connect.Response[apiv1.GetMessageResponse], error) {
	ev, err := s.node.Message(ctx, req.Msg.GetRoom(), req.Msg.GetSeq())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.GetMessageResponse{Event: ev}), nil
}

func (s *service) GetRoom(ctx context.Context, req *connect.Request[apiv1.GetRoomRequest]) (*connect.Response[apiv1.GetRoomResponse], error) {
	info, err := s.node.Room(ctx, req.Msg.GetRoom())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.GetRoomResponse{Room: info}), nil
}

func (s *service) ListMembers(ctx context.Context, req *connect.Request[apiv1.ListMembersRequest]) (*connect.Response[apiv1.ListMembersResponse], error) {
	m := req.Msg
	members, next, err := s.node.Members(ctx, m.GetRoom(), m.GetAfter(), m.GetLimit())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ListMembersResponse{Members: members, Next: next}), nil
}

func (s *service) CreateRoom(ctx context.Context, req *connect.Request[apiv1.CreateRoomRequest]) (*connect.Response[apiv1.CreateRoomResponse], error) {
	m := req.Msg
	info, err := s.node.CreateRoom(ctx, &parleypb.CreateRoom{Room: m.GetRoom(), Kind: m.GetKind(), Title: m.GetTitle(), Topic: m.GetTopic(), Invite: m.GetInvite()}, m.GetOwner())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.CreateRoomResponse{Room: info}), nil
}

func (s *service) UpdateRoom(ctx context.Context, req *connect.Request[apiv1.UpdateRoomRequest]) (*connect.Response[apiv1.UpdateRoomResponse], error) {
	m := req.Msg
	seq, err := s.node.UpdateRoom(ctx, m.GetRoom(), m.Title, m.Topic, m.ReadPositions)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.UpdateRoomResponse{Seq: seq}), nil
}

func (s *service) MarkRead(ctx context.Context, req *connect.Request[apiv1.MarkReadRequest]) (*connect.Response[apiv1.MarkReadResponse], error) {
	m := req.Msg
	seq, err := s.node.MarkRead(ctx, m.GetRoom(), m.GetUser(), m.GetSeq())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.MarkReadResponse{ReadSeq: seq}), nil
}

func (s *service) DeleteRoom(ctx context.Context, req *connect.Request[apiv1.DeleteRoomRequest]) (*connect.Response[apiv1.DeleteRoomResponse], error) {
	seq, err := s.node.DeleteRoom(ctx, req.Msg.GetRoom(), req.Msg.GetReason())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.DeleteRoomResponse{Seq: seq}), nil
}

// moderate acts as the system (with every right) on user in room.
func (s *service) moderate(ctx context.Context, room, user string, action parleypb.ModAction, role parleypb.Role, reason string, untilMs int64) (*connect.Response[apiv1.ModerateResponse], error) {
	var until time.Time
	if untilMs != 0 {
		until = time.UnixMilli(untilMs)
	}
	seq, err := s.node.Moderate(ctx, room, user, action, role, reason, until)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ModerateResponse{Seq: seq}), nil
}

func (s *service) AddMember(ctx context.Context, req *connect.Request[apiv1.AddMemberRequest]) (*connect.Response[apiv1.ModerateResponse], error) {
	return s.moderate(ctx, req.Msg.GetRoom(), req.Msg.GetUser(), parleypb.ModAction_MOD_ACTION_ADD, 0, "", 0)
}

func (s *service) RemoveMember(ctx context.Context, req *connect.Request[apiv1.RemoveMemberRequest]) (*connect.Response[apiv1.ModerateResponse], error) {
	return s.moderate(ctx, req.Msg.GetRoom(), req.Msg.GetUser(), parleypb.ModAction_MOD_ACTION_KICK, 0, req.Msg.GetReason(), 0)
}

func (s *service) SetRole(ctx context.Context, req *connect.Request[apiv1.SetRoleRequest]) (*connect.Response[apiv1.ModerateResponse], error) {
	m := req.Msg
	if m.GetRole() == parleypb.Role_ROLE_OWNER {
		return s.moderate(ctx, m.GetRoom(), m.GetUser(), parleypb.ModAction_MOD_ACTION_TRANSFER, 0, "", 0)
	}
	return s.moderate(ctx, m.GetRoom(), m.GetUser(), parleypb.ModAction_MOD_ACTION_SET_ROLE, m.GetRole(), "", 0)
}

func (s *service) Ban(ctx context.Context, req *connect.Request[apiv1.BanRequest]) (*connect.Response[apiv1.ModerateResponse], error) {
	m := req.Msg
	return s.moderate(ctx, m.GetRoom(), m.GetUser(), parleypb.ModAction_MOD_ACTION_BAN, 0, m.GetReason(), m.GetUntilMs())
}

func (s *service) Unban(ctx context.Context, req *connect.Request[apiv1.UnbanRequest]) (*connect.Response[apiv1.ModerateResponse], error) {
	return s.moderate(ctx, req.Msg.GetRoom(), req.Msg.GetUser(), parleypb.ModAction_MOD_ACTION_UNBAN, 0, "", 0)
}

func (s *service) Mute(ctx context.Context, req *connect.Request[apiv1.MuteRequest]) (*connect.Response[apiv1.ModerateResponse], error) {
	m := req.Msg
	return s.moderate(ctx, m.GetRoom(), m.GetUser(), parleypb.ModAction_MOD_ACTION_MUTE, 0, m.GetReason(), m.GetUntilMs())
}

func (s *service) Unmute(ctx context.Context, req *connect.Request[apiv1.UnmuteRequest]) (*connect.Response[apiv1.ModerateResponse], error) {
	return s.moderate(ctx, req.Msg.GetRoom(), req.Msg.GetUser(), parleypb.ModAction_MOD_ACTION_UNMUTE, 0, "", 0)
}

func (s *service) ListUserRooms(ctx context.Context, req *connect.Request[apiv1.ListUserRoomsRequest]) (*connect.Response[apiv1.ListUserRoomsResponse], error) {
	m := req.Msg
	rooms, next, err := s.node.UserRooms(ctx, m.GetUser(), m.GetAfter(), m.GetLimit())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ListUserRoomsResponse{Rooms: rooms, Next: next}), nil
}

// maxPresenceUsers bounds one GetPresence.
const maxPresenceUsers = 1000

func (s *service) GetPresence(ctx context.Context, req *connect.Request[apiv1.GetPresenceRequest]) (*connect.Response[apiv1.GetPresenceResponse], error) {
	users := req.Msg.GetUsers()
	if len(users) == 0 || len(users) > maxPresenceUsers {
		return nil, &actors.RequestError{Code: parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, Text: "name between 1 and 1000 users"}
	}
	online, err := s.node.Online(ctx, users...)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.GetPresenceResponse{Users: online}), nil
}

func (s *service) Disconnect(ctx context.Context, req *connect.Request[apiv1.DisconnectRequest]) (*connect.Response[apiv1.DisconnectResponse], error) {
	if err := actors.ValidName(req.Msg.GetUser()); err != nil {
		return nil, &actors.RequestError{Code: parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, Text: "user " + err.Error()}
	}
	n, err := s.node.Kick(ctx, req.Msg.GetUser(), req.Msg.GetReason())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.DisconnectResponse{ConnectionsClosed: uint32(n)}), nil
}
