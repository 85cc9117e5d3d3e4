//! Credential actors: one per credential, owning its token cache and its Graph session.
//!
//! Supervised by `credentials`, which starts one `credential:<id>` for every credential in the
//! store at boot and when one is created. The actor never does network I/O inside `handle`:
//! a token refresh runs in a task (one at a time; callers wait on it), and Graph requests run
//! in the caller's task with a [`GraphSession`] the actor hands out: the client, the current
//! token, and the mailbox's limiter (at most 4 requests in flight, shared throttle).
//!
//! Token failures are expected and do not crash the actor: they travel back in the reply,
//! show in `/status` as `last_failure`, and mark the credential `degraded`. A credential
//! actor that crashes too often is parked as `failed` and tried again later.
//!
//! Creating and deleting a credential (store, Graph and tree together) is in [`manage`].

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;
use uuid::Uuid;

use crate::deps::Deps;
use crate::graph::{GraphClient, GraphError, LimiterConfig, MailboxLimiter};
use crate::store::credentials::{self, CredentialRow};
use crate::store::StoreError;
use crate::supervision::{ChildSpec, Crash, GiveUp, ParkHook, StartHook, SupervisorMsg};
use crate::token::{self, AccessToken, TokenCache, TokenEndpoints, TokenError, TokenSource};
use crate::util::{spawn_guarded, spawn_reply};

mod manage;
pub use manage::{create, delete, ManageError, NewCredential};

/// Name of the credentials supervisor in the tree.
pub const SUPERVISOR: &str = "credentials";

/// How long a caller waits for a session (a token fetch has its own 30 s timeout).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(40);

/// Name of a credential's actor.
pub fn actor_name(id: &str) -> String {
    format!("credential:{id}")
}

/// Why a credential could not serve a Graph call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// Its actor is not running (restarting, parked), or the store could not be read.
    #[error("credential {0} is not available (restarting or failed)")]
    Unavailable(String),
    /// No such credential in the store: it was deleted (or never existed).
    #[error("credential {0} does not exist (deleted)")]
    Deleted(String),
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Graph answered with an error.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// What a caller needs to talk to Graph for one credential. Cheap to clone.
#[derive(Clone)]
pub struct GraphSession {
    pub client: GraphClient,
    /// The bearer token. Secret: never log it.
    pub token: String,
    /// The mailbox (user id or UPN) of `/users/{mailbox}/…` paths; `None` means `/me`.
    pub mailbox: Option<String>,
    pub limiter: MailboxLimiter,
    actor: ActorRef<CredentialMsg>,
}

impl std::fmt::Debug for GraphSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSession")
            .field("mailbox", &self.mailbox)
            .field("token", &"***")
            .finish()
    }
}

impl GraphSession {
    /// Runs one request on the mailbox's data under its limits (≤ 4 in flight, Retry-After,
    /// backoff; refused with [`GraphError::NotHeld`] while another instance holds the
    /// mailbox). A 401 forces one token refresh and one retry.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, CredentialError>
    where
        F: Fn(GraphClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, GraphError>>,
    {
        self.send(false, f).await
    }

    /// Like [`GraphSession::call`], for requests on the app's subscriptions rather than the
    /// mailbox's data: any instance may send them, whichever holds the mailbox.
    pub async fn call_app<T, F, Fut>(&self, f: F) -> Result<T, CredentialError>
    where
        F: Fn(GraphClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, GraphError>>,
    {
        self.send(true, f).await
    }

    async fn send<T, F, Fut>(&self, app: bool, f: F) -> Result<T, CredentialError>
    where
        F: Fn(GraphClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, GraphError>>,
    {
        let first = self
            .limiter
            .run_as(app, || f(self.client.clone(), self.token.clone()))
            .await;
        match first {
            Err(GraphError::Unauthorized { .. }) => {
                let fresh = refreshed_session(&self.actor, &self.token).await?;
                Ok(fresh
                    .limiter
                    .run_as(app, || f(fresh.client.clone(), fresh.token.clone()))
                    .await?)
            }
            other => Ok(other?),
        }
    }
}

/// A credential actor's messages.
pub enum CredentialMsg {
    /// A Graph session with a valid token (refreshing it first if due).
    Session(RpcReplyPort<Result<GraphSession, CredentialError>>),
    /// Graph refused this token (401): forget it, then answer with a fresh session.
    Refused(String, RpcReplyPort<Result<GraphSession, CredentialError>>),
    /// Self-sent: the credential's row, loaded from the store.
    Loaded(Result<Option<CredentialRow>, StoreError>),
    /// Self-sent: a token fetch ended; with a refresh grant, the token source it used (the
    /// store's at the time).
    Fetched(Result<AccessToken, TokenError>, Option<Box<TokenSource>>),
    /// Self-sent: a rotated refresh token is stored (or could not be).
    Persisted(AccessToken, Result<(), StoreError>),
    /// Fail as if crashed (debug endpoint).
    Crash(String),
}

impl From<Crash> for CredentialMsg {
    fn from(c: Crash) -> Self {
        CredentialMsg::Crash(c.0)
    }
}

/// The actor of one credential.
#[derive(Clone)]
pub struct Credential {
    pub deps: Deps,
    pub id: String,
}

type Waiter = RpcReplyPort<Result<GraphSession, CredentialError>>;

/// A credential actor's state, rebuilt from the store at every start.
pub struct CredentialState {
    source: Option<TokenSource>,
    mailbox: Option<String>,
    cache: TokenCache,
    /// Callers waiting for the refresh in progress (non-empty ⇔ a fetch is running), or for
    /// the row to load.
    waiters: Vec<Waiter>,
    fetching: bool,
    limiter: MailboxLimiter,
    client: Arc<GraphClient>,
    degraded: bool,
    preloaded: Option<Box<CredentialRow>>,
    /// When the cached token expires (Unix ms, 0 = none), read by `/status`.
    token_expires_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Credential {
    fn name(&self) -> String {
        actor_name(&self.id)
    }

    fn endpoints(&self) -> TokenEndpoints {
        let s = &self.deps.settings;
        TokenEndpoints {
            login_url: s.login_url.clone(),
            auth_service_url: s.auth_service_url.clone(),
            service_secret: s.service_secret.clone(),
        }
    }

    fn session(
        &self,
        myself: &ActorRef<CredentialMsg>,
        st: &CredentialState,
    ) -> Option<GraphSession> {
        let token = st.cache.get(Utc::now())?;
        Some(Self::session_with(myself, st, token.to_string()))
    }

    fn session_with(
        myself: &ActorRef<CredentialMsg>,
        st: &CredentialState,
        token: String,
    ) -> GraphSession {
        GraphSession {
            client: GraphClient::clone(&st.client),
            token,
            mailbox: st.mailbox.clone(),
            limiter: st.limiter.clone(),
            actor: myself.clone(),
        }
    }

    /// Answers at once if the token is good; otherwise queues the caller and makes sure one
    /// fetch runs.
    fn serve(&self, myself: &ActorRef<CredentialMsg>, st: &mut CredentialState, reply: Waiter) {
        if let Some(s) = self.session(myself, st) {
            let _ = reply.send(Ok(s));
            return;
        }
        st.waiters.push(reply);
        self.start_fetch(myself, st);
    }

    fn start_fetch(&self, myself: &ActorRef<CredentialMsg>, st: &mut CredentialState) {
        let Some(source) = st.source.clone() else {
            return;
        }; // fetched once the row loads
        if st.fetching {
            return;
        }
        st.fetching = true;
        let (http, endpoints) = (self.deps.http.clone(), self.endpoints());
        let id = Uuid::parse_str(&self.id).unwrap_or_default();
        let (store, cred_id) = (self.deps.store.clone(), self.id.clone());
        spawn_reply(
            myself,
            async move {
                // A refresh grant uses the refresh token as the store has it now: another
                // instance (its mailbox's holder before, or one serving a subscription
                // call) may have rotated it since this actor read it, and the old one may be
                // dead already.
                let source = match source {
                    TokenSource::RefreshToken { .. } => {
                        stored_source(&store, &cred_id).await.unwrap_or(source)
                    }
                    other => other,
                };
                let res = token::fetch_token(&http, &endpoints, id, &source).await;
                let used =
                    matches!(source, TokenSource::RefreshToken { .. }).then(|| Box::new(source));
                (res, used)
            },
            |(res, used)| CredentialMsg::Fetched(res, used),
        );
    }

    fn token_ready(
        &self,
        myself: &ActorRef<CredentialMsg>,
        st: &mut CredentialState,
        tok: AccessToken,
    ) {
        st.token_expires_ms.store(
            tok.expires_at.timestamp_millis(),
            std::sync::atomic::Ordering::Relaxed,
        );
        // The callers that waited for this token get it while it has not expired, even within
        // the cache's 5-minute margin: a token source that hands out its own cached token near
        // its end (a vending service) would otherwise fail every call until it rotates.
        let fresh = (tok.expires_at > Utc::now()).then(|| tok.token.clone());
        st.cache.set(tok);
        if st.degraded {
            st.degraded = false;
            let (store, id) = (self.deps.store.clone(), self.id.clone());
            spawn_guarded(myself, async move {
                let _ = credentials::set_status(&store, &id, "active", None).await;
            });
        }
        let waiters = std::mem::take(&mut st.waiters);
        for w in waiters {
            match &fresh {
                Some(token) => {
                    let _ = w.send(Ok(Self::session_with(myself, st, token.clone())));
                }
                None => {
                    let _ = w.send(Err(CredentialError::Token(TokenError::InvalidResponse(
                        "the token endpoint returned a token that is already expired".into(),
                    ))));
                }
            }
        }
    }

    fn token_failed(
        &self,
        myself: &ActorRef<CredentialMsg>,
        st: &mut CredentialState,
        err: TokenError,
    ) {
        tracing::warn!(credential = %self.id, error = %err, "token request failed");
        self.deps
            .health
            .note_failure(&self.name(), &format!("token: {err}"));
        metrics::counter!("relay365_token_failures_total").increment(1);
        for w in st.waiters.drain(..) {
            let _ = w.send(Err(CredentialError::Token(err.clone())));
        }
        if !st.degraded {
            st.degraded = true;
            let (store, id, why) = (self.deps.store.clone(), self.id.clone(), err.to_string());
            spawn_guarded(myself, async move {
                let _ = credentials::set_status(&store, &id, "degraded", Some(&why)).await;
            });
        }
    }
}

impl Actor for Credential {
    type Msg = CredentialMsg;
    type State = CredentialState;
    /// The credential's row when the supervisor has just read it (boot, creation); `None`
    /// on a restart, which reloads it from the store.
    type Arguments = Option<Box<CredentialRow>>;

    async fn pre_start(
        &self,
        _: ActorRef<CredentialMsg>,
        row: Option<Box<CredentialRow>>,
    ) -> Result<CredentialState, ActorProcessingErr> {
        Ok(CredentialState {
            source: None,
            mailbox: None,
            cache: TokenCache::new(),
            waiters: Vec::new(),
            fetching: false,
            limiter: MailboxLimiter::gated(
                LimiterConfig::default(),
                self.deps.mailboxes.gate(&self.id),
            ),
            client: self.deps.graph.clone(),
            degraded: false,
            preloaded: row,
            token_expires_ms: Arc::default(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<CredentialMsg>,
        st: &mut CredentialState,
    ) -> Result<(), ActorProcessingErr> {
        // Live info, computed when /status is read: nothing per credential is kept in the
        // registry but this closure (10,000 credentials must stay cheap).
        let (limiter, expires) = (st.limiter.clone(), st.token_expires_ms.clone());
        self.deps.health.set_info_fn(
            &self.name(),
            Arc::new(move || {
                let ms = expires.load(std::sync::atomic::Ordering::Relaxed);
                json!({
                    "token_expires_at": (ms != 0).then(|| crate::store::to_time(ms)),
                    "in_flight": limiter.in_flight(),
                    "throttled_until": limiter.throttled_until(),
                })
            }),
        );
        match st.preloaded.take() {
            Some(row) => {
                let _ = myself.send_message(CredentialMsg::Loaded(Ok(Some(*row))));
            }
            None => {
                let (store, id) = (self.deps.store.clone(), self.id.clone());
                spawn_reply(
                    &myself,
                    async move { credentials::get(&store, &id).await },
                    CredentialMsg::Loaded,
                );
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CredentialMsg>,
        msg: CredentialMsg,
        st: &mut CredentialState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CredentialMsg::Session(reply) => self.serve(&myself, st, reply),
            CredentialMsg::Refused(token, reply) => {
                // Only the token Graph refused is dropped: a refresh that already replaced it
                // must not be thrown away by a late 401.
                if st.cache.get(Utc::now()) == Some(token.as_str()) {
                    st.cache.invalidate();
                }
                self.serve(&myself, st, reply);
            }
            CredentialMsg::Loaded(Ok(Some(row))) => {
                let source: TokenSource = serde_json::from_str(&row.token_source).map_err(|e| {
                    format!(
                        "credential {}: stored token source is unreadable: {e}",
                        self.id
                    )
                })?;
                st.degraded = row.status == "degraded";
                st.mailbox = row.mailbox;
                st.source = Some(source);
                if !st.waiters.is_empty() {
                    self.start_fetch(&myself, st);
                }
            }
            CredentialMsg::Loaded(Ok(None)) => {
                return Err(format!("credential {} is not in the store", self.id).into())
            }
            CredentialMsg::Loaded(Err(e)) => return Err(format!("loading credential: {e}").into()),
            CredentialMsg::Fetched(Ok(tok), used) => {
                st.fetching = false;
                if let Some(used) = used {
                    st.source = Some(*used);
                }
                match (&tok.new_refresh_token, &st.source) {
                    // A rotated refresh token is stored before the new access token is used:
                    // the old one may already be dead.
                    (Some(rt), Some(source)) => {
                        let updated = source.with_refresh_token(rt);
                        st.source = Some(updated.clone());
                        let (store, id) = (self.deps.store.clone(), self.id.clone());
                        let value = serde_json::to_value(&updated).unwrap_or_default();
                        st.fetching = true; // no second fetch until it is stored
                        spawn_reply(
                            &myself,
                            async move {
                                let res = credentials::set_token_source(&store, &id, &value).await;
                                (tok, res)
                            },
                            |(tok, res)| CredentialMsg::Persisted(tok, res),
                        );
                    }
                    _ => self.token_ready(&myself, st, tok),
                }
            }
            CredentialMsg::Fetched(Err(e), used) => {
                if let Some(used) = used {
                    st.source = Some(*used);
                }
                st.fetching = false;
                self.token_failed(&myself, st, e);
            }
            CredentialMsg::Persisted(tok, res) => {
                st.fetching = false;
                if let Err(e) = res {
                    tracing::error!(credential = %self.id, error = %e, "could not store the rotated refresh token");
                    self.deps
                        .health
                        .note_failure(&self.name(), &format!("storing refresh token: {e}"));
                }
                self.token_ready(&myself, st, tok);
            }
            CredentialMsg::Crash(why) => return Err(why.into()),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<CredentialMsg>,
        st: &mut CredentialState,
    ) -> Result<(), ActorProcessingErr> {
        for w in st.waiters.drain(..) {
            let _ = w.send(Err(CredentialError::Unavailable(self.id.clone())));
        }
        Ok(())
    }
}

/// A Graph session for the credential, from its actor. A credential this instance has no
/// actor for at all may have been created through another instance a moment ago: it is
/// looked up in the store and its actor started (the notice from that instance may still be
/// on its way). The actor can also be between two lives at that moment (started by the
/// notice at the same time, or stopped and started again as mailboxes change hands), so an
/// `Unavailable` is asked again, three times at most, before it is the answer.
pub async fn session(deps: &Deps, credential_id: &str) -> Result<GraphSession, CredentialError> {
    let mut again = 0;
    loop {
        match session_once(deps, credential_id).await {
            Err(CredentialError::Unavailable(_)) if again < 3 => {
                again += 1;
                tokio::time::sleep(Duration::from_millis(25 << again)).await;
            }
            answer => return answer,
        }
    }
}

async fn session_once(deps: &Deps, credential_id: &str) -> Result<GraphSession, CredentialError> {
    let name = actor_name(credential_id);
    let unavailable = || CredentialError::Unavailable(credential_id.to_string());
    if deps.health.state(&name).is_none() {
        match credentials::get(&deps.store, credential_id).await {
            Ok(Some(row)) => {
                if let Err(e) = crate::tree::start_credential(deps, row).await {
                    tracing::warn!(credential = credential_id, error = %e, "starting a credential's actor");
                }
            }
            Ok(None) => return Err(CredentialError::Deleted(credential_id.to_string())),
            Err(_) => return Err(unavailable()),
        }
    }
    let actor: ActorRef<CredentialMsg> = deps.health.actor(&name).ok_or_else(unavailable)?;
    ask(&actor, CredentialMsg::Session, credential_id).await
}

/// The token source the store holds for a credential now; `None` if it cannot be read.
async fn stored_source(store: &crate::store::Store, id: &str) -> Option<TokenSource> {
    let row = credentials::get(store, id).await.ok()??;
    serde_json::from_str(&row.token_source).ok()
}

async fn refreshed_session(
    actor: &ActorRef<CredentialMsg>,
    refused: &str,
) -> Result<GraphSession, CredentialError> {
    let refused = refused.to_string();
    ask(
        actor,
        move |r| CredentialMsg::Refused(refused.clone(), r),
        "credential",
    )
    .await
}

async fn ask<F>(
    actor: &ActorRef<CredentialMsg>,
    msg: F,
    what: &str,
) -> Result<GraphSession, CredentialError>
where
    F: FnOnce(Waiter) -> CredentialMsg,
{
    match actor.call(msg, Some(SESSION_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(res)) => res,
        Ok(ractor::rpc::CallResult::Timeout) => Err(CredentialError::Token(TokenError::Transient(
            format!("{what}: no token within {SESSION_TIMEOUT:?}"),
        ))),
        _ => Err(CredentialError::Unavailable(what.to_string())),
    }
}

/// The child spec of a credential's actor. `row`, when given, spares the first start a read
/// of the store; restarts always read it.
pub fn child_spec(deps: &Deps, id: &str, row: Option<CredentialRow>) -> ChildSpec {
    let actor = Credential {
        deps: deps.clone(),
        id: id.to_string(),
    };
    let first = std::sync::Mutex::new(row.map(Box::new));
    ChildSpec::new(actor_name(id), "credential", actor, move || {
        first.lock().ok().and_then(|mut r| r.take())
    })
    .give_up(GiveUp::Park(deps.settings.park_for))
}

/// At start, the credentials supervisor loads every stored credential and starts its actor.
pub fn start_hook(deps: &Deps) -> StartHook {
    let deps = deps.clone();
    Arc::new(move |sup: ActorRef<SupervisorMsg>| {
        let deps = deps.clone();
        let me = sup.clone();
        spawn_guarded(&me, async move {
            let rows = match credentials::list(&deps.store).await {
                Ok(rows) => rows,
                Err(e) => {
                    // Crash the supervisor: its parent restarts it, and the load is retried.
                    let _ =
                        sup.send_message(SupervisorMsg::Crash(format!("loading credentials: {e}")));
                    return;
                }
            };
            for row in rows {
                let spec = child_spec(&deps, &row.id.clone(), Some(row));
                let _ = sup
                    .call(
                        |r| SupervisorMsg::Add(spec, r),
                        Some(Duration::from_secs(10)),
                    )
                    .await;
            }
        });
    })
}

/// When a credential actor is parked, its credential is marked `degraded` in the store.
pub fn park_hook(deps: &Deps) -> ParkHook {
    let store = deps.store.clone();
    Arc::new(move |name: &str, reason: &str| {
        let Some(id) = name.strip_prefix("credential:").map(str::to_string) else {
            return;
        };
        let (store, reason) = (store.clone(), reason.to_string());
        tokio::spawn(async move {
            if let Err(e) = credentials::set_status(&store, &id, "degraded", Some(&reason)).await {
                tracing::warn!(credential = %id, error = %e, "could not mark credential degraded");
            }
        });
    })
}
