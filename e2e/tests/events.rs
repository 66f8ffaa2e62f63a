//! GetContainerEvents end to end, as root: two subscribers through a
//! burst of container starts, a stop and a removal; then a kill -9 of
//! berthd while a container exits, and the exit delivered after restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::time::Duration;

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::setup;
use k8s_cri::v1::*;

type Events = tonic::Streaming<ContainerEventResponse>;

async fn subscribe(c: &mut berth_cli::client::CriClient) -> Events {
    c.runtime
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The next `n` events as (container id, type), each within 30 s.
async fn next(events: &mut Events, n: usize) -> Vec<(String, ContainerEventType)> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(30), events.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events: {out:?}", out.len()))
            .unwrap()
            .expect("the stream ended");
        out.push((e.container_id.clone(), e.container_event_type()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_see_every_event_once_in_order_across_a_crash() {
    if !root_or_skip("two_subscribers_see_every_event_once_in_order_across_a_crash") {
        return;
    }
    let mut s = setup("events", "berth", fixture::busybox()).await;
    let mut a = subscribe(&mut s.c).await;
    let mut b = subscribe(&mut s.c).await;

    // A burst: 20 containers created and started back to back.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(s.run(&format!("c{i}"), &["sleep", "1000"]).await);
    }
    let mut want = Vec::new();
    for id in &ids {
        want.push((id.clone(), ContainerEventType::ContainerCreatedEvent));
        want.push((id.clone(), ContainerEventType::ContainerStartedEvent));
    }
    s.stop(&ids[0], 0).await;
    s.remove(&ids[0]).await;
    want.push((ids[0].clone(), ContainerEventType::ContainerStoppedEvent));
    want.push((ids[0].clone(), ContainerEventType::ContainerDeletedEvent));
    let got_a = next(&mut a, want.len()).await;
    let got_b = next(&mut b, want.len()).await;
    assert_eq!(got_a, want);
    assert_eq!(got_b, want);

    // Events carry the pod's status and its containers'.
    let mut c = subscribe(&mut s.c).await;
    s.stop(&ids[1], 0).await;
    let e = tokio::time::timeout(Duration::from_secs(30), c.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.container_id, ids[1]);
    assert_eq!(e.pod_sandbox_status.unwrap().id, s.pod);
    assert_eq!(e.containers_statuses.len(), 19);
    let stopped = e
        .containers_statuses
        .iter()
        .find(|st| st.id == ids[1])
        .unwrap();
    assert_eq!(stopped.state(), ContainerState::ContainerExited);
    assert!(e.created_at > 0);
    let _ = next(&mut a, 1).await;
    let _ = next(&mut b, 1).await;

    // berthd killed while a container exits: the exit comes after restart.
    let short = s.run("short", &["sh", "-c", "sleep 1"]).await;
    let _ = next(&mut a, 2).await;
    drop((a, b, c));
    s.e.d.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.restart().await;
    let mut after = subscribe(&mut s.c).await;
    let got = next(&mut after, 1).await;
    assert_eq!(
        got,
        [(short.clone(), ContainerEventType::ContainerStoppedEvent)]
    );
    let st = s.status(&short).await;
    assert_eq!(st.exit_code, 0);
    s.finish().await;
}
