-- Cheaper landing of notifications (issue 3): every index of `events` is written on every
-- accepted notification, and the idempotency index is the one whose keys are random.
--
-- 1. The unique index holds a 128-bit digest of the idempotency key (32 hex characters: the
--    first half of its SHA-256) instead of the key itself (about 250 bytes, mostly Graph's
--    message id). SQLite has no SHA-256 in SQL, so keys stored before keep their old form: a
--    repeat of such a notification after the upgrade is stored once more (Graph repeats
--    within minutes of the first delivery, so only notifications of those minutes can).
alter table events rename column idempotency_key to idempotency_digest;

-- 2. Event ids are time-ordered (UUIDv7, received_at is the time in the id), so the primary
--    key already lists events as received: the index on (received_at, id) goes, and the
--    credential filter pages by id. (Events stored before this migration keep their random v4
--    ids, so they list in id order, not in time order, among the newer ones.)
drop index events_received;
drop index events_credential;
create index events_credential on events(credential_id, id);
