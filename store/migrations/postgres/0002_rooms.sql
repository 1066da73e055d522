-- Rooms' state, beside their logs.

-- Events other than posts: the wire protocol's SenderKind of the sender, and
-- the event's structured part (opaque bytes, NULL when there is none). With
-- constant defaults, adding them rewrites no existing row, and rows from
-- before read back as kind 0 with no body.
ALTER TABLE parley_messages
	ADD COLUMN sender_kind smallint NOT NULL DEFAULT 0,
	ADD COLUMN body        bytea;

-- Names sort bytewise (COLLATE "C") whatever the database's collation, so
-- listings page in the order every backend uses, and the text indexes
-- serve > and ORDER BY. Joins to parley_rooms, whose room is in the
-- database's collation, compare with COLLATE "default" so that its primary
-- key serves them.

-- One row per described room (a RoomRecord; latest comes from
-- parley_rooms). The partial index is the list of public rooms, which
-- would otherwise be a scan past every private and direct room.
CREATE TABLE parley_room_records (
	room       text COLLATE "C" PRIMARY KEY,
	kind       smallint    NOT NULL,
	title      text        NOT NULL,
	topic      text        NOT NULL,
	created_by text        NOT NULL,
	created_at timestamptz NOT NULL,
	peer       text        NOT NULL,
	deleted    boolean     NOT NULL,
	members    bigint      NOT NULL
);
CREATE INDEX parley_room_records_public ON parley_room_records (room) WHERE kind = 1 AND NOT deleted;

-- One row per user with a standing in a room (member, invited, banned,
-- muted); a row that says nothing is deleted rather than kept. NULL
-- banned_until or muted_until: not banned (muted). The second index lists a
-- user's rooms.
CREATE TABLE parley_members (
	room         text COLLATE "C" NOT NULL,
	username     text COLLATE "C" NOT NULL,
	role         smallint    NOT NULL,
	invited      boolean     NOT NULL,
	invited_by   text        NOT NULL,
	since        timestamptz NOT NULL,
	banned_until timestamptz,
	muted_until  timestamptz,
	PRIMARY KEY (room, username)
);
CREATE INDEX parley_members_by_user ON parley_members (username, room);
