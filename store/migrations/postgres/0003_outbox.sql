-- The webhook outbox: entries are inserted in the transaction of the events
-- they tell of and deleted once the application acknowledged them. pos is
-- commit order within a room (a room commits one batch at a time, so its
-- later entries get later numbers); the deliverer reads by it.
CREATE TABLE parley_outbox (
	pos     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id      text COLLATE "C" NOT NULL UNIQUE,
	room    text        NOT NULL,
	type    text        NOT NULL,
	payload bytea       NOT NULL,
	created timestamptz NOT NULL
);

-- Who may deliver: one row, held by one node until it expires. A lease
-- rather than a row lock (SELECT ... FOR UPDATE SKIP LOCKED) because the
-- right must outlast many transactions and HTTP calls, and a lock would
-- hold a transaction (and a pooled connection) open for all of them.
CREATE TABLE parley_outbox_lease (
	id      integer     PRIMARY KEY CHECK (id = 1),
	holder  text        NOT NULL,
	expires timestamptz NOT NULL
);
