//! [`GuardLayer`]: the one tower layer every call of the public API passes before reaching its handler.
//!
//! In order: a unary call over `--max-concurrent-calls` is refused at once (RESOURCE_EXHAUSTED, no queueing);
//! the caller is authenticated (UNAUTHENTICATED); its role is checked against [`super::policy`]
//! (PERMISSION_DENIED); its rate is checked (RESOURCE_EXHAUSTED with RetryInfo); it takes one of its key's
//! slots (`--max-calls-per-key`, or `--max-streams-per-key` for a stream); a unary call's request is read in
//! full within `--request-timeout`; then the [`Principal`] and the key's [`Meter`] are put in the request
//! extensions for the handler and the call runs under the client's deadline (`grpc-timeout`, answered with
//! DEADLINE_EXCEEDED). A stream keeps its slot until it ends, and its key is looked up again while it is
//! open: a revoked key's streams end with UNAUTHENTICATED. Health and reflection pass untouched.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

use super::{
    Authenticator,
    policy::{self, Access},
    rate::RateLimiter,
};
use crate::{
    domain::principal::{Principal, Role},
    error::Error,
};

/// The deadline is enforced this much before the client's, so that this layer (DEADLINE_EXCEEDED) answers
/// before tonic's own `grpc-timeout` handling, which answers CANCELLED: the timer has millisecond ticks, and 2 ms
/// puts ours at least one tick earlier. A call with less time than that left is refused at once.
const DEADLINE_MARGIN: Duration = Duration::from_millis(2);
/// What a refused call is told to wait when the server or its key is at its concurrency limit.
const BUSY_RETRY: Duration = Duration::from_millis(100);
/// Bytes a unary request body may hold beyond its one message: the gRPC frame header, and a little slack so
/// that tonic, not this layer, refuses a message just over the limit with its own answer.
const FRAME_SLACK: usize = 1024;
/// How often an open stream's key is looked up again when keys are not cached (`--key-cache-ttl 0`).
const UNCACHED_RECHECK: Duration = Duration::from_secs(1);

/// Shared state of the guard.
#[derive(Debug)]
pub struct Guard {
    pub authenticator: Authenticator,
    /// Permits for unary calls in progress; None when unlimited.
    pub calls: Option<Arc<Semaphore>>,
    pub rate: Option<Arc<RateLimiter>>,
    /// What each key holds.
    pub slots: KeySlots,
    /// How long a unary request may take to arrive.
    pub request_timeout: Duration,
    /// Largest request message (`--max-message-bytes`).
    pub max_message_bytes: usize,
}

#[derive(Clone, Debug)]
pub struct GuardLayer {
    guard: Arc<Guard>,
}

impl GuardLayer {
    pub fn new(guard: Guard) -> Self {
        Self {
            guard: Arc::new(guard),
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            inner,
            guard: self.guard.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GuardService<S> {
    inner: S,
    guard: Arc<Guard>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for GuardService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone takes the place of the service that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let roles = match policy::access(request.uri().path()) {
            Access::Open => return Box::pin(inner.call(request)),
            Access::Unknown => {
                let path = request.uri().path().to_owned();
                return Box::pin(async move {
                    Ok(Status::unimplemented(format!("unknown method {path}")).into_http())
                });
            }
            Access::Roles(roles) => roles,
        };
        let streaming = policy::is_streaming(request.uri().path());
        let guard = self.guard.clone();
        let started = Instant::now();
        let deadline = grpc_timeout(request.headers())
            .map(|timeout| started + timeout.saturating_sub(DEADLINE_MARGIN));
        Box::pin(async move {
            if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                return Ok(refusal(Error::DeadlineExceeded));
            }
            let _permit = match guard.call_permit() {
                Ok(permit) => permit,
                Err(error) => return Ok(refusal(error)),
            };
            let principal = match guard.admit(roles, request.headers()).await {
                Ok(principal) => principal,
                Err(error) => return Ok(refusal(error)),
            };
            let slot = match guard.slots.take(&guard, &principal.agent, streaming) {
                Ok(slot) => slot,
                Err(error) => return Ok(refusal(error)),
            };
            if !streaming {
                let until = deadline.map_or(started + guard.request_timeout, |deadline| {
                    deadline.min(started + guard.request_timeout)
                });
                request = match guard.read_request(request, until).await {
                    Ok(request) => request,
                    Err(status) => return Ok(status.into_http()),
                };
            }
            let recheck = streaming
                .then(|| Recheck::new(&guard, request.headers()))
                .flatten();
            request.extensions_mut().insert(principal.clone());
            request.extensions_mut().insert(Meter {
                rate: guard.rate.clone(),
                caller: principal.agent.clone(),
            });
            let call = inner.call(request);
            let mut response = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, call).await {
                    Ok(response) => response?,
                    Err(_) => return Ok(refusal(Error::DeadlineExceeded)),
                },
                None => call.await?,
            };
            if principal.role == Role::Portal {
                response = conceal_merge(response);
            }
            // For the call log, which runs outside this layer.
            response.extensions_mut().insert(principal);
            if streaming {
                // The stream holds its key's slot, and is ended if the key is revoked, for as long as it is open.
                response = response.map(|body| {
                    Body::new(GuardedStream {
                        inner: body,
                        slot: Some(slot),
                        recheck,
                        ended: false,
                    })
                });
            }
            Ok(response)
        })
    }
}

impl Guard {
    /// A permit of `--max-concurrent-calls`, held until the call answers (a stream's answer is its start).
    fn call_permit(&self) -> Result<Option<OwnedSemaphorePermit>, Error> {
        match &self.calls {
            Some(calls) => match calls.clone().try_acquire_owned() {
                Ok(permit) => Ok(Some(permit)),
                Err(_) => Err(too_busy()),
            },
            None => Ok(None),
        }
    }

    /// Authenticates the caller and checks their role and rate.
    async fn admit(
        &self,
        roles: &[crate::domain::principal::Role],
        headers: &http::HeaderMap,
    ) -> Result<Principal, Error> {
        let principal = self.authenticator.authenticate(headers).await?;
        if !roles.contains(&principal.role) {
            return Err(Error::permission_denied(
                "ROLE_NOT_ALLOWED",
                format!(
                    "the {} role may not call this method (allowed: {})",
                    principal.role,
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(rate) = &self.rate
            && let Err(wait) = rate.check(&principal.agent)
        {
            return Err(rate_limited(&principal.agent, wait));
        }
        Ok(principal)
    }

    /// Reads a unary call's request in full by `until`, so that a client that never finishes sending it holds
    /// its slot no longer than that.
    async fn read_request(
        &self,
        request: http::Request<Body>,
        until: Instant,
    ) -> Result<http::Request<Body>, Status> {
        let (parts, body) = request.into_parts();
        let limit = self.max_message_bytes.saturating_add(FRAME_SLACK);
        match tokio::time::timeout_at(until, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => Ok(http::Request::from_parts(
                parts,
                Body::new(Full::new(collected.to_bytes())),
            )),
            Ok(Err(err)) if err.is::<LengthLimitError>() => Err(Error::OutOfRange {
                reason: "MESSAGE_TOO_LARGE",
                message: format!(
                    "the request is larger than the {} bytes this server accepts",
                    self.max_message_bytes
                ),
            }
            .into()),
            Ok(Err(_)) => Err(Status::cancelled("the client stopped sending the request")),
            Err(_) => Err(Error::RequestTimeout(self.request_timeout).into()),
        }
    }
}

/// What each key holds at once: unary calls in flight and open streams, each against its own limit.
#[derive(Debug, Default)]
pub struct KeySlots {
    /// Calls a key may have in flight; 0 = no limit of its own.
    pub max_calls: usize,
    /// Streams a key may hold open; 0 = no limit.
    pub max_streams: usize,
    held: Mutex<HashMap<String, Held>>,
}

#[derive(Debug, Default)]
struct Held {
    calls: usize,
    streams: usize,
}

impl KeySlots {
    pub fn new(max_calls: usize, max_streams: usize) -> Self {
        Self {
            max_calls,
            max_streams,
            held: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call's or a stream's slot for `key`, or why there is none.
    fn take(&self, guard: &Arc<Guard>, key: &str, stream: bool) -> Result<Slot, Error> {
        let mut held = self.lock();
        let entry = held.entry(key.to_owned()).or_default();
        if stream {
            if self.max_streams > 0 && entry.streams >= self.max_streams {
                return Err(Error::ResourceExhausted {
                    reason: "TOO_MANY_STREAMS",
                    message: format!(
                        "{key} already holds {} open watch streams, the most a key may; close one first",
                        entry.streams
                    ),
                    retry_after: None,
                });
            }
            entry.streams += 1;
        } else {
            if self.max_calls > 0 && entry.calls >= self.max_calls {
                return Err(Error::ResourceExhausted {
                    reason: "TOO_MANY_CALLS_FOR_KEY",
                    message: format!(
                        "{key} already has {} calls in flight, the most a key may; retry shortly",
                        entry.calls
                    ),
                    retry_after: Some(BUSY_RETRY),
                });
            }
            entry.calls += 1;
        }
        Ok(Slot {
            guard: guard.clone(),
            key: key.to_owned(),
            stream,
        })
    }

    fn give_back(&self, key: &str, stream: bool) {
        let mut held = self.lock();
        if let Some(entry) = held.get_mut(key) {
            if stream {
                entry.streams = entry.streams.saturating_sub(1);
            } else {
                entry.calls = entry.calls.saturating_sub(1);
            }
            if entry.calls == 0 && entry.streams == 0 {
                held.remove(key);
            }
        }
    }

    /// Calls and streams `key` holds now.
    pub fn held(&self, key: &str) -> (usize, usize) {
        self.lock()
            .get(key)
            .map_or((0, 0), |held| (held.calls, held.streams))
    }
}

/// A key's call or stream slot, given back when dropped.
struct Slot {
    guard: Arc<Guard>,
    key: String,
    stream: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.guard.slots.give_back(&self.key, self.stream);
    }
}

/// The rate limit of the calling key, for handlers whose messages arrive on a stream: every message counts.
#[derive(Clone, Debug)]
pub struct Meter {
    rate: Option<Arc<RateLimiter>>,
    caller: String,
}

impl Meter {
    /// A meter that never refuses (calls that did not pass the guard, such as tests of handlers).
    pub fn unlimited() -> Self {
        Self {
            rate: None,
            caller: String::new(),
        }
    }

    /// Takes `n` calls' worth of the key's rate (a message naming `n` records costs `n`, up to a full burst).
    pub fn take(&self, n: usize) -> Result<(), Error> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        rate.check_n(&self.caller, u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(|wait| rate_limited(&self.caller, wait))
    }
}

/// Looks an open stream's key up again every so often; says when it no longer names an active key.
struct Recheck {
    guard: Arc<Guard>,
    headers: http::HeaderMap,
    every: Duration,
    timer: Pin<Box<Sleep>>,
    lookup: Option<BoxFuture<Result<Principal, Error>>>,
}

impl Recheck {
    /// None when keys are off (`--auth none`: nothing to revoke).
    fn new(guard: &Arc<Guard>, headers: &http::HeaderMap) -> Option<Self> {
        if !guard.authenticator.uses_keys() {
            return None;
        }
        // Half the cache time between lookups that accept entries up to half that old: a revoked key is
        // noticed within the cache time.
        let ttl = guard.authenticator.cache_ttl();
        let every = if ttl.is_zero() {
            UNCACHED_RECHECK
        } else {
            (ttl / 2).max(Duration::from_millis(50))
        };
        Some(Self {
            guard: guard.clone(),
            headers: headers.clone(),
            every,
            timer: Box::pin(tokio::time::sleep(every)),
            lookup: None,
        })
    }

    /// The status that ends the stream once its key is revoked.
    fn poll_revoked(&mut self, cx: &mut Context<'_>) -> Poll<Status> {
        loop {
            if let Some(lookup) = self.lookup.as_mut() {
                let outcome = ready!(lookup.as_mut().poll(cx));
                self.lookup = None;
                self.timer.as_mut().reset(Instant::now() + self.every);
                if let Err(Error::Unauthenticated { .. }) = outcome {
                    return Poll::Ready(
                        Error::unauthenticated(
                            "API_KEY_REVOKED",
                            "the API key of this stream was revoked; the stream ends",
                        )
                        .into(),
                    );
                }
                // Still valid, or the database did not answer: look again later.
            }
            ready!(self.timer.as_mut().poll(cx));
            let guard = self.guard.clone();
            let headers = self.headers.clone();
            let max_age = self.every;
            self.lookup = Some(Box::pin(async move {
                guard.authenticator.still_valid(&headers, max_age).await
            }));
        }
    }
}

pin_project! {
    /// A stream's response: holds its key's slot until it ends, and ends with UNAUTHENTICATED once its key is
    /// revoked (dropping the body ends the handler's session, and with it the agent's presence).
    struct GuardedStream {
        #[pin]
        inner: Body,
        slot: Option<Slot>,
        recheck: Option<Recheck>,
        ended: bool,
    }
}

impl http_body::Body for GuardedStream {
    type Data = prost::bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if let Some(recheck) = this.recheck.as_mut()
            && let Poll::Ready(status) = recheck.poll_revoked(cx)
        {
            *this.ended = true;
            this.slot.take();
            let mut trailers = http::HeaderMap::new();
            return Poll::Ready(Some(match status.add_header(&mut trailers) {
                Ok(()) => Ok(Frame::trailers(trailers)),
                Err(status) => Err(status),
            }));
        }
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            *this.ended = true;
            this.slot.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a portal learns of a merged customer: that it is not found, as if deleted. Its key stays bound to the
/// merged record, it may not open the one it went into, and following the merges would name other customers.
fn conceal_merge(response: http::Response<Body>) -> http::Response<Body> {
    use tonic_types::StatusExt as _;
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.code() != tonic::Code::NotFound {
        return response;
    }
    let details = status.get_error_details();
    match details.error_info() {
        Some(info) if info.reason == "CUSTOMER_MERGED" => {
            let id = info.metadata.get("id").cloned().unwrap_or_default();
            Status::from(Error::not_found("customer", id)).into_http()
        }
        _ => response,
    }
}

fn rate_limited(caller: &str, wait: Duration) -> Error {
    Error::ResourceExhausted {
        reason: "RATE_LIMITED",
        message: format!(
            "{caller} is over its call rate; retry in {} ms",
            wait.as_millis().max(1)
        ),
        retry_after: Some(wait),
    }
}

fn too_busy() -> Error {
    Error::ResourceExhausted {
        reason: "TOO_MANY_CALLS",
        message: "the server is at its limit of concurrent calls; retry shortly".to_owned(),
        retry_after: Some(BUSY_RETRY),
    }
}

fn refusal(error: Error) -> http::Response<Body> {
    Status::from(error).into_http()
}

/// The client's deadline from `grpc-timeout` (`1-8 digits` + `H`, `M`, `S`, `m`, `u` or `n`); None if absent
/// or malformed (a malformed header is ignored, as tonic does).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic::Code;

    use super::*;
    use crate::config::{AuthMode, DatabaseSettings};

    const METHOD: &str = "/customer_context.v1.CustomerService/GetCustomer";

    /// A guard (`--auth none`, at most `calls` at once, `per_key` per agent, requests read within 200 ms) in
    /// front of a service that never answers.
    async fn guarded(
        calls: usize,
    ) -> (
        tempfile::TempDir,
        impl Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future = BoxFuture<Result<http::Response<Body>, Infallible>>,
        >,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = crate::store::Store::connect(&DatabaseSettings::new(url))
            .await
            .unwrap();
        let layer = GuardLayer::new(Guard {
            authenticator: Authenticator::new(AuthMode::None, store, Duration::ZERO),
            calls: Some(Arc::new(Semaphore::new(calls))),
            rate: None,
            slots: KeySlots::new(2, 1),
            request_timeout: Duration::from_millis(200),
            max_message_bytes: 1024,
        });
        let never = tower::service_fn(|_: http::Request<Body>| {
            std::future::pending::<Result<http::Response<Body>, Infallible>>()
        });
        (dir, layer.layer(never))
    }

    fn call(timeout: Option<&str>) -> http::Request<Body> {
        call_as("ana", timeout, Body::empty())
    }

    fn call_as(agent: &str, timeout: Option<&str>, body: Body) -> http::Request<Body> {
        let mut request = http::Request::builder()
            .uri(METHOD)
            .header("x-agent-id", agent);
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        request.body(body).unwrap()
    }

    /// A request body whose bytes never come.
    fn stalled() -> Body {
        Body::new(http_body_util::StreamBody::new(futures::stream::pending::<
            Result<Frame<prost::bytes::Bytes>, Status>,
        >()))
    }

    fn status(response: &http::Response<Body>) -> Status {
        Status::from_header_map(response.headers()).expect("a trailers-only status")
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_deadline_exceeded() {
        let (_dir, mut service) = guarded(8).await;
        let started = std::time::Instant::now();
        let response = service.call(call(Some("50m"))).await.unwrap();
        assert_eq!(status(&response).code(), Code::DeadlineExceeded);
        assert!(
            started.elapsed() >= Duration::from_millis(45),
            "{:?}",
            started.elapsed()
        );
        let response = service.call(call(Some("1u"))).await.unwrap();
        assert_eq!(status(&response).code(), Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn calls_over_the_limit_are_refused_at_once_with_retry_info() {
        use tonic_types::StatusExt as _;

        let (_dir, mut service) = guarded(1).await;
        let mut held = service.call(call_as("ben", None, Body::empty()));
        assert!(
            futures::poll!(&mut held).is_pending(),
            "holds the only permit"
        );
        let response = service.call(call(None)).await.unwrap();
        let refused = status(&response);
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(refused.get_error_details().retry_info().is_some());
        drop(held);
        let mut next = service.call(call(None));
        assert!(
            futures::poll!(&mut next).is_pending(),
            "the permit came back"
        );
    }

    #[tokio::test]
    async fn a_request_that_never_arrives_is_ended_and_frees_its_slots() {
        use tonic_types::StatusExt as _;

        let (_dir, mut service) = guarded(8).await;
        let started = std::time::Instant::now();
        let mut first = service.call(call_as("ana", None, stalled()));
        let mut second = service.call(call_as("ana", None, stalled()));
        assert!(
            futures::poll!(&mut first).is_pending(),
            "waits for its request"
        );
        assert!(
            futures::poll!(&mut second).is_pending(),
            "waits for its request"
        );
        let mut held = service.call(call_as("ana", None, Body::empty()));
        let Poll::Ready(refused) = futures::poll!(&mut held) else {
            panic!("refused at once: ana holds both of her slots")
        };
        let refused = status(&refused.unwrap());
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(
            refused.get_error_details().error_info().unwrap().reason,
            "TOO_MANY_CALLS_FOR_KEY"
        );
        let mut other = service.call(call_as("ben", None, Body::empty()));
        assert!(
            futures::poll!(&mut other).is_pending(),
            "another agent still gets in"
        );

        for response in [first.await.unwrap(), second.await.unwrap()] {
            let ended = status(&response);
            assert_eq!(ended.code(), Code::DeadlineExceeded);
            assert_eq!(
                ended.get_error_details().error_info().unwrap().reason,
                "REQUEST_TIMEOUT"
            );
        }
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
        let mut again = service.call(call_as("ana", None, Body::empty()));
        assert!(
            futures::poll!(&mut again).is_pending(),
            "her slots came back"
        );
    }

    #[tokio::test]
    async fn a_request_over_the_size_limit_is_out_of_range() {
        let (_dir, mut service) = guarded(8).await;
        let big = Body::new(Full::new(prost::bytes::Bytes::from(vec![0u8; 4096])));
        let response = service.call(call_as("ana", None, big)).await.unwrap();
        assert_eq!(status(&response).code(), Code::OutOfRange);
    }

    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        let parse = |v: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(parse("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse("123456789S"), None);
        assert_eq!(parse("10x"), None);
        assert_eq!(parse("S"), None);
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }
}
