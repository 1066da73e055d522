package actorpb

// A socket's reader may report its close after the session already stopped
// (the session closed it); that dead letter is expected, not worth a log
// line (Proto.Actor's IgnoreDeadLetterLogging). It is still counted.
func (*ConnClosed) IgnoreDeadLetterLogging() {}

// Deliveries to a session that just stopped are expected too: the room
// learns of the stop a moment later (it watches its members).
func (*Deliver) IgnoreDeadLetterLogging()      {}
func (*DeliverBatch) IgnoreDeadLetterLogging() {}
