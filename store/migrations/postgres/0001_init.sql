-- Message history. The primary key (room, seq) is both the fence against two
-- writers of one room and the index every read and trim walks.
CREATE TABLE parley_messages (
	room          text        NOT NULL,
	seq           bigint      NOT NULL,
	time          timestamptz NOT NULL,
	sender        text        NOT NULL,
	text          text        NOT NULL,
	client_msg_id text        NOT NULL,
	PRIMARY KEY (room, seq)
);

-- One row per room that ever stored a message. latest never goes back, even
-- when retention deleted every message; Append's guard on it is what makes a
-- second writer of the room fail with a conflict. count is the number of
-- stored messages, so retention by count costs nothing for rooms under it.
CREATE TABLE parley_rooms (
	room   text   PRIMARY KEY,
	latest bigint NOT NULL,
	count  bigint NOT NULL
);
