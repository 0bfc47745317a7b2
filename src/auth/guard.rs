//! [`GuardLayer`]: the one tower layer every call of the public API passes before reaching its handler.
//!
//! In order: a call over `--max-concurrent-calls` is refused at once (RESOURCE_EXHAUSTED, no queueing); the
//! caller is authenticated (UNAUTHENTICATED); its role is checked against [`super::policy`]
//! (PERMISSION_DENIED); its rate is checked (RESOURCE_EXHAUSTED with RetryInfo); then the [`Principal`] is put in
//! the request extensions for the handler (read with `crate::api::principal`) and the call runs under the
//! client's deadline (`grpc-timeout`, answered with DEADLINE_EXCEEDED). Health and reflection pass untouched.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{sync::Semaphore, time::Instant};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

use super::{
    Authenticator,
    policy::{self, Access},
    rate::RateLimiter,
};
use crate::{domain::principal::Principal, error::Error};

/// The deadline is enforced this much before the client's, so that this layer (DEADLINE_EXCEEDED) answers
/// before tonic's own `grpc-timeout` handling, which answers CANCELLED: the timer has millisecond ticks, and 2 ms
/// puts ours at least one tick earlier. A call with less time than that left is refused at once.
const DEADLINE_MARGIN: Duration = Duration::from_millis(2);
/// What a refused call is told to wait when the server is at its concurrency limit.
const BUSY_RETRY: Duration = Duration::from_millis(100);

/// Shared state of the guard.
#[derive(Debug)]
pub struct Guard {
    pub authenticator: Authenticator,
    /// Permits for calls in progress; None when unlimited.
    pub calls: Option<Arc<Semaphore>>,
    pub rate: Option<RateLimiter>,
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

impl<S, B> Service<http::Request<B>> for GuardService<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
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
        let guard = self.guard.clone();
        let deadline = grpc_timeout(request.headers())
            .map(|timeout| Instant::now() + timeout.saturating_sub(DEADLINE_MARGIN));
        Box::pin(async move {
            if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                return Ok(refusal(Error::DeadlineExceeded));
            }
            let _permit = match &guard.calls {
                Some(calls) => match calls.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => return Ok(refusal(too_busy())),
                },
                None => None,
            };
            let principal = match guard.admit(roles, request.headers()).await {
                Ok(principal) => principal,
                Err(error) => return Ok(refusal(error)),
            };
            request.extensions_mut().insert(principal.clone());
            let call = inner.call(request);
            let mut response = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, call).await {
                    Ok(response) => response?,
                    Err(_) => return Ok(refusal(Error::DeadlineExceeded)),
                },
                None => call.await?,
            };
            // For the call log, which runs outside this layer.
            response.extensions_mut().insert(principal);
            Ok(response)
        })
    }
}

impl Guard {
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
            return Err(Error::ResourceExhausted {
                reason: "RATE_LIMITED",
                message: format!(
                    "{} is over its call rate; retry in {} ms",
                    principal.agent,
                    wait.as_millis().max(1)
                ),
                retry_after: Some(wait),
            });
        }
        Ok(principal)
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

    /// A guard (`--auth none`, at most `calls` at once) in front of a service that never answers.
    async fn guarded(
        calls: usize,
    ) -> (
        tempfile::TempDir,
        impl Service<
            http::Request<()>,
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
        });
        let never = tower::service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<http::Response<Body>, Infallible>>()
        });
        (dir, layer.layer(never))
    }

    fn call(timeout: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::builder().uri(METHOD);
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        request.body(()).unwrap()
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
        let mut held = service.call(call(None));
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
