-- Reserved: 0003 is the webhooks branch's 0003_outbox.sql. This file keeps
-- the versions consecutive on the messages branch; the merge replaces it
-- with that migration.
SELECT 1;
