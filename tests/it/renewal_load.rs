//! Loading many subscriptions at start, a page at a time (issue 11): the store's pages cover
//! every row once, in order; a schedule of more than one page is loaded whole by the renewal
//! actor and by the receiver, on every store; a reload removes from the schedule what the
//! store no longer has. Every wait is on observable state.
use crate::support;

use std::collections::HashSet;

use relay365_actors::store::subscriptions;
use relay365_actors::store::{credentials, new_id, now_ms, Store};
use serde_json::{json, Value};
use support::api::{call, get_any as get, sim_with};
use support::{eventually, find_actor, spawn_public_app};

async fn exec(store: &Store, sql: &str) {
    match store {
        Store::Sqlite(p) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
        Store::Postgres(p) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
    }
}

/// A credential with a static token.
async fn credential(store: &Store) -> String {
    let id = new_id();
    credentials::insert(
        store,
        &id,
        "bulk",
        Some("bulk@contoso.com"),
        "static",
        &json!({"kind": "static", "access_token": "t"}),
    )
    .await
    .unwrap();
    id
}

/// Stores `n` active subscriptions of `cred` (ids `{prefix}-1` …), each with a Graph id and
/// a renewal a day away, in one statement on either engine; those numbered up to `with_delta`
/// get a completed delta round.
async fn seed(store: &Store, cred: &str, prefix: &str, n: usize, with_delta: usize) {
    let now = now_ms();
    let due = now + 86_400_000;
    exec(
        store,
        &format!(
            "insert into subscriptions (id, credential_id, external_id, resource, change_types, \
             notification_url, client_state, status, expires_at, next_renewal_at, created_at, \
             updated_at) \
             with recursive n(i) as (select 1 union all select i + 1 from n where i < {n}) \
             select '{prefix}-' || i, '{cred}', 'ext-{prefix}-' || i, 'me/messages', 'created', \
             'http://127.0.0.1/api/ms365/webhook', 'cs-' || i, 'active', {due} + 86400000, {due}, \
             {now}, {now} from n"
        ),
    )
    .await;
    exec(
        store,
        &format!(
            "insert into delta_state (subscription_id, folder, last_sync_at) \
             with recursive n(i) as (select 1 union all select i + 1 from n where i < {with_delta}) \
             select '{prefix}-' || i, 'inbox', {now} from n"
        ),
    )
    .await;
}

/// A removed subscription, and one the API is creating (no Graph id, no renewal time yet).
async fn seed_odd_ones(store: &Store, cred: &str) {
    let now = now_ms();
    exec(
        store,
        &format!(
            "insert into subscriptions (id, credential_id, external_id, resource, change_types, \
             notification_url, client_state, status, created_at, updated_at) values \
             ('removed-1', '{cred}', 'ext-removed-1', 'me/messages', 'created', 'http://x', 'cs', \
              'removed', {now}, {now}), \
             ('creating-1', '{cred}', null, 'me/messages', 'created', 'http://x', 'cs', \
              'active', {now}, {now})"
        ),
    )
    .await;
}

#[tokio::test]
async fn the_stores_pages_cover_every_subscription_once_in_order() {
    on_every_store!(|db| {
        let store = db.store().await;
        let cred = credential(&store).await;
        seed(&store, &cred, "s", 23, 20).await;
        seed_odd_ones(&store, &cred).await;

        let mut after = String::new();
        let (mut rows, mut pages) = (Vec::new(), 0);
        loop {
            let page = subscriptions::schedule_page(&store, &after, 5)
                .await
                .unwrap();
            assert!(page.len() <= 5, "{}", db.label);
            pages += 1;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            let full = page.len() == 5;
            rows.extend(page);
            if !full {
                break;
            }
        }
        // 23 and the one being created; not the removed one.
        assert_eq!(rows.len(), 24, "{}", db.label);
        assert_eq!(pages, 5, "{}: four full pages and one of four", db.label);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "{}: in id order, none twice", db.label);
        assert!(!ids.contains(&"removed-1"));
        let baseline: HashSet<&str> = rows
            .iter()
            .filter(|r| r.needs_baseline)
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(
            baseline,
            HashSet::from(["s-21", "s-22", "s-23", "creating-1"]),
            "{}",
            db.label
        );

        let mut after = String::new();
        let mut known = Vec::new();
        loop {
            let page = subscriptions::receivable_page(&store, &after, 5)
                .await
                .unwrap();
            let full = page.len() == 5;
            if let Some(last) = page.last() {
                after = last.id.clone();
            }
            known.extend(page.into_iter().map(|r| r.external_id));
            if !full {
                break;
            }
        }
        // Neither the removed one nor the one without a Graph id.
        assert_eq!(known.len(), 23, "{}", db.label);
        assert_eq!(known.iter().collect::<HashSet<_>>().len(), 23);
        store.close().await;
        db.cleanup().await;
    });
}

async fn info(base: &str, actor: &str) -> Value {
    let status = get(base, "/status").await;
    find_actor(&status["root"], actor).unwrap()["info"].clone()
}

#[tokio::test]
async fn a_schedule_of_more_than_one_page_is_loaded_whole_and_a_reload_drops_what_is_gone() {
    let n = 2 * relay365_actors::renewal::LOAD_PAGE as usize + 7;
    assert!(n > 2 * relay365_actors::receiver::LOAD_PAGE as usize);
    let sim = sim_with(relay365::sim::SimConfig::default()).await;
    on_every_store!(|db| {
        let store = db.store().await;
        let cred = credential(&store).await;
        seed(&store, &cred, "s", n, n).await;
        seed_odd_ones(&store, &cred).await;
        // A second credential, deleted below: its subscriptions leave the schedule then.
        let other = credential(&store).await;
        seed(&store, &other, "o", 3, 3).await;
        store.close().await;

        let graph = sim.base_url();
        let app = spawn_public_app(
            &db.url,
            &[
                ("RELAY365_GRAPH_URL", &graph),
                ("RELAY365_RESYNC_INTERVAL_SECONDS", "86400"),
            ],
        )
        .await;
        let base = app.url();
        let loaded = |want: u64| {
            let base = base.clone();
            async move {
                let r = info(&base, "renewal").await;
                r["loading"] == false && r["scheduled"].as_u64() == Some(want)
            }
        };
        assert!(
            eventually(60, || loaded(n as u64 + 3)).await,
            "{}: renewal {}",
            db.label,
            info(&base, "renewal").await
        );
        assert!(
            eventually(60, || async {
                info(&base, "receiver").await["subscriptions"].as_u64() == Some(n as u64 + 3)
            })
            .await,
            "{}: receiver {}",
            db.label,
            info(&base, "receiver").await
        );
        let r = info(&base, "renewal").await;
        assert_eq!(r["queued"], 0, "{}: no baseline due: {r}", db.label);

        let (s, _) = call(
            reqwest::Method::DELETE,
            format!("{base}/api/credentials/{other}"),
            None,
        )
        .await;
        assert_eq!(s, 204, "{}", db.label);
        assert!(
            eventually(60, || loaded(n as u64)).await,
            "{}: after the reload {}",
            db.label,
            info(&base, "renewal").await
        );
        app.stop().await.unwrap();
    });
}
