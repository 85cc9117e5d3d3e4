//! The per-mailbox limiter against the simulator: Retry-After honoured, at most four requests
//! in flight, backoff on transient errors (ordering facts, never timings).

use super::*;
#[tokio::test]
async fn limiter_honours_retry_after_from_the_simulator() {
    let sim = start(quick_config()).await;
    let graph = client(&sim);
    let token = app_token(&sim).await;
    let id = sim
        .sim()
        .deliver(ALICE, vec![mail("x")])
        .await
        .unwrap()
        .message_ids
        .remove(0);
    sim.sim()
        .add_fault(FaultSpec {
            kind: FaultKind::Throttle,
            mailbox: Some(ALICE.into()),
            retry_after_secs: Some(0.3),
            latency_ms: None,
            count: Some(1),
            duration_secs: None,
        })
        .unwrap();
    sim.sim().clear_requests();

    let limiter = MailboxLimiter::default();
    let msg = limiter
        .run(|| graph.get_message(&token, Some(ALICE), &id))
        .await
        .unwrap();
    assert_eq!(msg.id, id);

    let reqs = sim.sim().requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    assert!(
        reqs[1].started >= reqs[0].ended + Duration::from_millis(300),
        "retry came before Retry-After"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn limiter_keeps_a_burst_within_four_concurrent_requests() {
    let sim = start(SimConfig {
        latency: Duration::from_millis(15),
        ..quick_config()
    })
    .await;
    let graph = client(&sim);
    let token = app_token(&sim).await;
    let id = sim
        .sim()
        .deliver(ALICE, vec![mail("x")])
        .await
        .unwrap()
        .message_ids
        .remove(0);

    // Without the limiter the simulator's Outlook rule bites (so the check below means something).
    let raw =
        futures::future::join_all((0..8).map(|_| graph.get_message(&token, Some(ALICE), &id)))
            .await;
    assert!(raw.iter().any(
        |r| matches!(r, Err(GraphError::Throttled { code, .. }) if code == "ApplicationThrottled")
    ));
    sim.sim().clear_requests();

    let limiter = MailboxLimiter::default();
    let all = futures::future::join_all(
        (0..50).map(|_| limiter.run(|| graph.get_message(&token, Some(ALICE), &id))),
    )
    .await;
    assert!(all.iter().all(Result::is_ok));
    assert!(
        sim.sim().max_concurrency(ALICE) <= 4,
        "max {}",
        sim.sim().max_concurrency(ALICE)
    );
    let reqs = sim.sim().requests();
    assert_eq!(reqs.len(), 50);
    assert!(reqs
        .iter()
        .all(|r| r.status == 200 && r.error_code.is_none()));
    assert_eq!(limiter.in_flight(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn limiter_backs_off_on_transient_errors_and_leaves_401_to_the_caller() {
    let sim = start(quick_config()).await;
    let graph = client(&sim);
    let token = app_token(&sim).await;
    let id = sim
        .sim()
        .deliver(ALICE, vec![mail("x")])
        .await
        .unwrap()
        .message_ids
        .remove(0);
    sim.sim()
        .add_fault(FaultSpec {
            kind: FaultKind::Unavailable,
            mailbox: None,
            retry_after_secs: None,
            latency_ms: None,
            count: Some(2),
            duration_secs: None,
        })
        .unwrap();
    sim.sim().clear_requests();
    let limiter = MailboxLimiter::new(LimiterConfig {
        backoff_base: Duration::from_millis(50),
        ..LimiterConfig::default()
    });
    limiter
        .run(|| graph.get_message(&token, Some(ALICE), &id))
        .await
        .unwrap();
    let reqs = sim.sim().requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 503, 200]
    );
    // Backoff: the second retry waited at least half of twice the base.
    assert!(reqs[2].started >= reqs[1].ended + Duration::from_millis(50));

    // A revoked token: 401, returned at once; a fresh token then works.
    sim.sim().revoke_tokens(None);
    sim.sim().clear_requests();
    let err = limiter
        .run(|| graph.get_message(&token, Some(ALICE), &id))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Unauthorized { .. }));
    assert_eq!(sim.sim().requests().len(), 1);
    let fresh = app_token(&sim).await;
    limiter
        .run(|| graph.get_message(&fresh, Some(ALICE), &id))
        .await
        .unwrap();
    sim.shutdown().await;
}
