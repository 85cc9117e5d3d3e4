-- relay365 schema, PostgreSQL flavour. Keep in step with migrations/sqlite/0001_init.sql:
-- the same tables, columns and meanings; only the types differ where the engines do.
-- Times are Unix milliseconds (bigint) in both stores, so that ordering and "due before"
-- comparisons are the same integer comparisons everywhere. Ids are UUIDs as text.
-- Never edit an applied migration: add a new one.

create table credentials (
    id              text primary key,
    name            text not null,
    mailbox         text,
    -- 'auth_service' | 'client_credentials' | 'refresh_token' | 'static'
    token_kind      text not null,
    -- the token source with its secrets (JSON); never returned by the API
    token_source    text not null,
    -- 'active' | 'degraded'
    status          text not null default 'active',
    last_error      text,
    created_at      bigint not null,
    updated_at      bigint not null
);

create table subscriptions (
    id                      text primary key,
    credential_id           text not null references credentials(id) on delete cascade,
    -- Graph's id; it changes when the subscription is recreated, our id does not
    external_id             text unique,
    resource                text not null,
    change_types            text not null,           -- comma-separated, as Graph takes them
    notification_url        text not null,
    lifecycle_url           text,
    client_state            text not null,           -- secret; never returned by the API
    -- 'active' | 'expired' | 'error' | 'removed'
    status                  text not null,
    expires_at              bigint,
    -- renewal bookkeeping
    granted_lifetime_ms     bigint,                  -- what Graph granted at the last create/renew
    next_renewal_at         bigint,
    renewal_attempts        bigint not null default 0,
    last_error              text,
    lease_owner             text,                    -- which instance renews it now
    lease_until             bigint,
    last_renewed_at         bigint,
    last_reauthorized_at    bigint,
    last_notification_at    bigint,
    created_at              bigint not null,
    updated_at              bigint not null
);
create index subscriptions_credential on subscriptions(credential_id);
create index subscriptions_due on subscriptions(status, next_renewal_at);

create table events (
    id                  text primary key,
    -- SPEC §3.1: {subscription}:{changeType}:{resourceData.id}:{etag} for changes,
    -- {subscriptionId}:{lifecycleEvent}:{subscriptionExpirationDateTime} for lifecycle items
    idempotency_key     text not null unique,
    -- 'change' | 'lifecycle' | 'resync'
    kind                text not null,
    subscription_id     text,
    credential_id       text,
    -- created | updated | deleted, or the lifecycle event's name
    change_type         text not null,
    resource_id         text,
    -- the item as Graph sent it, clientState already replaced by "***"
    raw                 text not null,
    -- 'pending' | 'processing' | 'completed' | 'skipped' | 'failed'
    status              text not null default 'pending',
    attempts            bigint not null default 0,
    next_attempt_at     bigint not null,
    lease_owner         text,
    lease_until         bigint,
    last_error          text,
    payload             text,                        -- the normalized event, once processed
    received_at         bigint not null,
    processed_at        bigint
);
create index events_due on events(status, next_attempt_at);
create index events_received on events(received_at, id);
create index events_credential on events(credential_id, received_at);

create table targets (
    id              text primary key,
    url             text not null,
    secret          text not null,                   -- whsec_…; returned only when created
    headers         text not null default '{}',      -- JSON object; values shown masked
    credential_id   text references credentials(id) on delete cascade,
    event_types     text,                            -- JSON array, null = all
    created_at      bigint not null
);

create table deliveries (
    id                  text primary key,
    event_id            text not null references events(id) on delete cascade,
    target_id           text not null references targets(id) on delete cascade,
    -- 'pending' | 'delivered' | 'failed'
    status              text not null default 'pending',
    attempts            bigint not null default 0,
    next_attempt_at     bigint not null,
    lease_owner         text,
    lease_until         bigint,
    last_status_code    bigint,
    last_error          text,
    created_at          bigint not null,
    delivered_at        bigint,
    unique (event_id, target_id)
);
create index deliveries_due on deliveries(status, next_attempt_at);

create table delta_state (
    subscription_id     text not null references subscriptions(id) on delete cascade,
    folder              text not null,
    delta_link          text,
    last_sync_at        bigint,
    primary key (subscription_id, folder)
);
