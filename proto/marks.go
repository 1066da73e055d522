package parleypb

// Messages that actors send each other are not client activity: they must
// not re-arm a session's idle timer (Proto.Actor's NotInfluenceReceiveTimeout).
// Only Envelope and BadFrame, which come from the client, count.

func (*Deliver) NotInfluenceReceiveTimeout()         {}
func (*Ack) NotInfluenceReceiveTimeout()             {}
func (*Error) NotInfluenceReceiveTimeout()           {}
func (*PresenceEvent) NotInfluenceReceiveTimeout()   {}
func (*HistoryPage) NotInfluenceReceiveTimeout()     {}
func (*RoomRestarted) NotInfluenceReceiveTimeout()   {}
func (*PresenceRebuild) NotInfluenceReceiveTimeout() {}
func (*ConnClosed) NotInfluenceReceiveTimeout()      {}
func (*Shutdown) NotInfluenceReceiveTimeout()        {}
func (*RoomFlush) NotInfluenceReceiveTimeout()       {}
func (*RoomList) NotInfluenceReceiveTimeout()        {}
func (*Reset) NotInfluenceReceiveTimeout()           {}

// A socket's reader may report its close after the session already stopped
// (the session closed it); that dead letter is expected, not worth a log line.
func (*ConnClosed) IgnoreDeadLetterLogging() {}

// Deliveries to a session that just stopped are expected too: the room
// learns of the stop a moment later (it watches its members).
func (*Deliver) IgnoreDeadLetterLogging() {}
