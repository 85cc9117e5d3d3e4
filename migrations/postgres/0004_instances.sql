-- Several instances on one database (issue 15). Keep in step with the other engine's 0004.
--
-- Each `serve` process heartbeats into `instances`; one that stops heartbeating is dead, and
-- the others take its leases. Mailboxes are split between the live instances: the instance
-- named in `credential_owners` is the only one that sends Graph requests for that
-- credential's mailbox (Outlook's 4-requests-per-mailbox limit holds across instances), until
-- `until`, which it extends with every heartbeat.
create table instances (
    id              text primary key,
    -- the address it listens on, as it reported it (for /status)
    address         text,
    version         text not null,
    started_at      bigint not null,
    heartbeat_at    bigint not null,
    -- set by the instance on a clean stop, or by another that found it dead
    stopped_at      bigint
);

create table credential_owners (
    credential_id   text primary key references credentials(id) on delete cascade,
    instance        text not null,
    until           bigint not null
);
create index credential_owners_instance on credential_owners(instance);
