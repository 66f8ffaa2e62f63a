//! Container lifecycle events for kubelet's evented PLEG
//! (GetContainerEvents): created, started, stopped, deleted, in the order
//! they happened, to every subscriber.
//!
//! Each subscriber has its own unbounded queue, so a burst (a hundred pods
//! starting) is never dropped for a slow reader; a subscriber that went
//! away is forgotten at the next event. Events that happen while nobody
//! listens (exits found at start-up, before kubelet reconnects) are kept,
//! up to [`BACKLOG`], and given to the next subscriber.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::mpsc;

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub container_id: String,
    pub pod_id: String,
    pub kind: EventKind,
    /// When it happened, in nanoseconds since the epoch.
    pub at: i64,
}

/// Events kept for the next subscriber while there is none.
pub const BACKLOG: usize = 4096;

#[derive(Debug, Default)]
struct Hub {
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    backlog: VecDeque<Event>,
}

/// The hub every lifecycle operation reports to.
#[derive(Debug, Default)]
pub struct Events {
    hub: Mutex<Hub>,
}

impl Events {
    /// Reports `kind` for a container now.
    pub(crate) fn emit(&self, container_id: &str, pod_id: &str, kind: EventKind) {
        let event = Event {
            container_id: container_id.to_owned(),
            pod_id: pod_id.to_owned(),
            kind,
            at: berth_util::time::now_ns(),
        };
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        hub.subscribers.retain(|s| s.send(event.clone()).is_ok());
        if hub.subscribers.is_empty() {
            if hub.backlog.len() == BACKLOG {
                hub.backlog.pop_front();
            }
            hub.backlog.push_back(event);
        }
    }

    /// A new subscriber's queue: the backlog first (if this is the first
    /// subscriber since events were held), then every event from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        for e in hub.backlog.drain(..) {
            let _ = tx.send(e);
        }
        hub.subscribers.push(tx);
        rx
    }

    /// Subscribers listening now.
    pub fn subscribers(&self) -> usize {
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        hub.subscribers.retain(|s| !s.is_closed());
        hub.subscribers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<(String, EventKind)> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push((e.container_id, e.kind));
        }
        out
    }

    #[test]
    fn every_subscriber_gets_every_event_in_order() {
        let ev = Events::default();
        let mut a = ev.subscribe();
        let mut b = ev.subscribe();
        for i in 0..500 {
            ev.emit(&format!("c{i}"), "p", EventKind::Created);
            ev.emit(&format!("c{i}"), "p", EventKind::Started);
        }
        let (ka, kb) = (kinds(&mut a), kinds(&mut b));
        assert_eq!(ka.len(), 1000, "nothing dropped in a burst");
        assert_eq!(ka, kb);
        assert_eq!(ka[0], ("c0".into(), EventKind::Created));
        assert_eq!(ka[999], ("c499".into(), EventKind::Started));
        drop(a);
        ev.emit("x", "p", EventKind::Stopped);
        assert_eq!(ev.subscribers(), 1, "a gone subscriber is forgotten");
        assert_eq!(kinds(&mut b), [("x".into(), EventKind::Stopped)]);
    }

    #[test]
    fn events_nobody_heard_go_to_the_next_subscriber_once() {
        let ev = Events::default();
        ev.emit("c1", "p", EventKind::Stopped);
        ev.emit("c2", "p", EventKind::Deleted);
        let mut first = ev.subscribe();
        let mut second = ev.subscribe();
        assert_eq!(
            kinds(&mut first),
            [
                ("c1".into(), EventKind::Stopped),
                ("c2".into(), EventKind::Deleted)
            ]
        );
        assert!(kinds(&mut second).is_empty());
        drop(first);
        drop(second);
        // Bounded: the oldest go first.
        for i in 0..BACKLOG + 10 {
            ev.emit(&format!("c{i}"), "p", EventKind::Started);
        }
        let held = kinds(&mut ev.subscribe());
        assert_eq!(held.len(), BACKLOG);
        assert_eq!(held[0].0, "c10");
    }
}
