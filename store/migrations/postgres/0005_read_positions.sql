-- Read positions: the room setting that shows members each other's read
-- cursors (off by default). A constant default: adding it rewrites no
-- existing row.
ALTER TABLE parley_room_records
	ADD COLUMN read_positions boolean NOT NULL DEFAULT false;
