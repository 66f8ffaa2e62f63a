//! Counts calls in flight, so shutdown waits for calls, not for connections.
//!
//! hyper's graceful shutdown waits for every HTTP/2 connection to close,
//! which needs the client's cooperation (a PING ack after GOAWAY); kubelet
//! keeps its connection open for life. berthd therefore stops accepting,
//! waits (bounded) until no call is being handled, and exits: an idle
//! connection loses nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tower::{Layer, Service};

#[derive(Debug, Default)]
struct Inner {
    count: AtomicUsize,
    idle: Notify,
}

/// The counter, and the tower layer that maintains it.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    inner: Arc<Inner>,
}

struct Guard(Arc<Inner>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }

    fn enter(&self) -> Guard {
        self.inner.count.fetch_add(1, Ordering::AcqRel);
        Guard(self.inner.clone())
    }

    /// Resolves once no call is in flight.
    pub async fn idle(&self) {
        loop {
            // Created before the check: notify_waiters reaches it even
            // if the last call ends in between.
            let notified = self.inner.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl<S> Layer<S> for InFlight {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            tracker: self.clone(),
        }
    }
}

/// A service whose calls are counted by an [`InFlight`].
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    tracker: InFlight,
}

impl<S, R> Service<R> for Counted<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let guard = self.tracker.enter();
        let fut = self.inner.call(request);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_the_last_call() {
        let t = InFlight::default();
        t.idle().await; // nothing in flight
        let g1 = t.enter();
        let g2 = t.enter();
        assert_eq!(t.count(), 2);
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.idle().await }
        });
        drop(g1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(g2);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
