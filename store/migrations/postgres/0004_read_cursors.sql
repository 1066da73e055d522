-- Read cursors: each member's last read seq, and the seqs of the unread
-- posts that mention it (big-endian 8-byte seqs, concatenated: one bytea,
-- so a batch of member records still goes in one unnest). Constant
-- defaults: adding them rewrites no existing row.
ALTER TABLE parley_members
	ADD COLUMN read_seq bigint NOT NULL DEFAULT 0,
	ADD COLUMN mentions bytea  NOT NULL DEFAULT '\x';
