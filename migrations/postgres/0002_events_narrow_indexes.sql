-- Cheaper landing of notifications (issue 3): every index of `events` is written on every
-- accepted notification, and the idempotency index is the one whose keys are random.
--
-- 1. The unique index holds a 128-bit digest of the idempotency key (32 hex characters: the
--    first half of its SHA-256) instead of the key itself (about 250 bytes, mostly Graph's
--    message id): an index about a sixth the size, which stays in memory and costs far fewer
--    full-page images in the WAL after each checkpoint. Keys stored before are converted.
alter table events rename column idempotency_key to idempotency_digest;
alter index events_idempotency_key_key rename to events_idempotency_digest_key;
update events
   set idempotency_digest = encode(substring(sha256(convert_to(idempotency_digest, 'UTF8')) from 1 for 16), 'hex');

-- 2. Event ids are time-ordered (UUIDv7, received_at is the time in the id), so the primary
--    key already lists events as received: the index on (received_at, id) goes, and the
--    credential filter pages by id. (Events stored before this migration keep their random v4
--    ids, so they list in id order, not in time order, among the newer ones.)
drop index events_received;
drop index events_credential;

-- 3. The indexed text columns compare as bytes (collation "C"), not through the database's
--    locale: they hold UUIDs, hex digests and status words, whose byte order is their order,
--    and locale comparisons in the btrees took about a fifth of the receiver's backend time.
alter table events
    alter column id type text collate "C",
    alter column idempotency_digest type text collate "C",
    alter column status type text collate "C",
    alter column credential_id type text collate "C";
alter table deliveries alter column event_id type text collate "C";

create index events_credential on events(credential_id, id);
