//! The shutdown signal: how long-running calls (watch streams, health watches) learn that the server began
//! shutting down, so they end and let the drain finish instead of being cut off when the grace period runs out.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::sync::watch;
use tokio_stream::{Stream, wrappers::WatchStream};
use tonic::Status;

/// Tells long-running calls (server streams, watches) that the server began shutting down, so they can end
/// and let the drain finish instead of being cut off when the grace period runs out.
///
/// Cheap to clone. Get it from [`RunningServer::shutdown_signal`]; [`Shutdown::never`] (also `Default`) is a
/// signal that never fires, for tools and tests that build services without a server. Dropping the
/// [`RunningServer`] also counts as shutdown.
///
/// ```ignore
/// // In a server-streaming handler: end the stream with UNAVAILABLE when shutdown begins.
/// Ok(Response::new(state.shutdown.guard(ReceiverStream::new(rx))))
/// // Or in a producer loop:
/// tokio::select! { _ = shutdown.begun() => break, event = events.recv() => { /* ... */ } }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    signal: Option<watch::Receiver<bool>>,
}

impl Shutdown {
    /// A signal and the sender that fires it.
    pub fn channel() -> (watch::Sender<bool>, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (
            sender,
            Shutdown {
                signal: Some(receiver),
            },
        )
    }

    /// A signal that never fires.
    pub fn never() -> Shutdown {
        Shutdown { signal: None }
    }

    /// Whether shutdown has begun.
    pub fn has_begun(&self) -> bool {
        self.signal
            .as_ref()
            .is_some_and(|signal| *signal.borrow() || signal.has_changed().is_err())
    }

    /// Completes when shutdown begins (at once if it already has).
    pub async fn begun(&self) {
        match &self.signal {
            Some(signal) => {
                // An error means the server is gone, which is shutdown too.
                let _ = signal.clone().wait_for(|begun| *begun).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Wraps a response stream so it ends when shutdown begins: one item already available is still delivered,
    /// then the stream ends with `UNAVAILABLE` ("reconnect"), which gRPC clients treat as retryable.
    pub fn guard<S, T>(&self, stream: S) -> UntilShutdown<S>
    where
        S: Stream<Item = Result<T, Status>>,
    {
        UntilShutdown {
            inner: stream,
            signal: self.signal.clone().map(WatchStream::new),
            state: GuardState::Running,
        }
    }
}

pin_project_lite::pin_project! {
    /// A response stream that ends when the server shuts down; made by [`Shutdown::guard`].
    pub struct UntilShutdown<S> {
        #[pin]
        inner: S,
        signal: Option<WatchStream<bool>>,
        state: GuardState,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GuardState {
    Running,
    /// Shutdown began: deliver at most one more ready item.
    Ending,
    /// One last item was delivered; the UNAVAILABLE status follows.
    Closing,
    Done,
}

fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down; reconnect and try again")
}

impl<S, T> Stream for UntilShutdown<S>
where
    S: Stream<Item = Result<T, Status>>,
{
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            match *this.state {
                GuardState::Running => {
                    if let Some(signal) = this.signal.as_mut() {
                        let begun = loop {
                            match Pin::new(&mut *signal).poll_next(cx) {
                                Poll::Ready(Some(false)) => continue,
                                Poll::Ready(Some(true) | None) => break true,
                                Poll::Pending => break false,
                            }
                        };
                        if begun {
                            *this.signal = None;
                            *this.state = GuardState::Ending;
                            continue;
                        }
                    }
                    let item = ready!(this.inner.as_mut().poll_next(cx));
                    if item.is_none() {
                        *this.state = GuardState::Done;
                    }
                    return Poll::Ready(item);
                }
                GuardState::Ending => {
                    return match this.inner.as_mut().poll_next(cx) {
                        Poll::Ready(Some(item)) => {
                            *this.state = GuardState::Closing;
                            Poll::Ready(Some(item))
                        }
                        Poll::Ready(None) => {
                            *this.state = GuardState::Done;
                            Poll::Ready(None)
                        }
                        Poll::Pending => {
                            *this.state = GuardState::Done;
                            Poll::Ready(Some(Err(shutting_down())))
                        }
                    };
                }
                GuardState::Closing => {
                    *this.state = GuardState::Done;
                    return Poll::Ready(Some(Err(shutting_down())));
                }
                GuardState::Done => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_stream::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn guarded_stream_ends_with_unavailable_when_shutdown_begins() {
        let (begin, shutdown) = Shutdown::channel();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(4);
        let mut stream =
            std::pin::pin!(shutdown.guard(tokio_stream::wrappers::ReceiverStream::new(rx)));

        tx.send(Ok(1)).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert!(!shutdown.has_begun());

        // The item sent just before shutdown still arrives, then UNAVAILABLE, then the end.
        tx.send(Ok(2)).await.unwrap();
        begin.send_replace(true);
        assert!(shutdown.has_begun());
        assert_eq!(stream.next().await.unwrap().unwrap(), 2);
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(stream.next().await.is_none());
        // Nothing more is read from the source after the end.
        tx.send(Ok(3)).await.unwrap();
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn guarded_stream_wakes_on_shutdown_while_idle() {
        let (begin, shutdown) = Shutdown::channel();
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(1);
        let mut stream = shutdown.guard(tokio_stream::wrappers::ReceiverStream::new(rx));
        let waiter = tokio::spawn(async move { stream.next().await });
        tokio::task::yield_now().await;
        begin.send_replace(true);
        let first = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.unwrap().unwrap_err().code(), tonic::Code::Unavailable);
    }
}
