//! Authentication: who a call comes from, resolved from its metadata.
//!
//! With `--auth keys` the caller is the active API key of `authorization: Bearer <secret>`, found by the
//! secret's SHA-256. Keys are looked up in the database and remembered for `--key-cache-ttl` (default 5 s), so a
//! key created by `customer-context keys create` works on the next call, and a revoked one stops working
//! within that time, on every replica, without a restart. With `--auth none` every caller is an admin acting as
//! its `x-agent-id`.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use http::HeaderMap;

use crate::{
    config::AuthMode,
    domain::{
        Violations, api_key,
        principal::{Principal, Role},
        reason, text,
    },
    error::{Error, Result},
    store::Store,
};

/// Metadata key naming the acting agent with `--auth none`.
pub const AGENT_HEADER: &str = "x-agent-id";
/// The acting agent when a call names none.
pub const ANONYMOUS: &str = "anonymous";
/// Most keys remembered at once; beyond it expired entries are dropped, then all.
const CACHE_CAPACITY: usize = 10_000;

/// Reasons of UNAUTHENTICATED errors.
pub mod unauthenticated {
    pub const MISSING_API_KEY: &str = "MISSING_API_KEY";
    pub const MALFORMED_API_KEY: &str = "MALFORMED_API_KEY";
    pub const INVALID_API_KEY: &str = "INVALID_API_KEY";
}

/// Resolves the caller of each call.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    store: Store,
    ttl: Duration,
    /// Secret hash -> the key's principal (None: no active key), and when it was read.
    cache: Mutex<HashMap<String, (Option<Principal>, Instant)>>,
}

impl Authenticator {
    pub fn new(mode: AuthMode, store: Store, ttl: Duration) -> Self {
        Self {
            mode,
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller of a call with these headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal> {
        self.authenticate_within(headers, self.ttl).await
    }

    /// Whether the credentials of `headers` still name an active key, from a lookup at most `max_age` old (an
    /// open stream asks this again and again, so that a revoked key's streams end).
    pub async fn still_valid(&self, headers: &HeaderMap, max_age: Duration) -> Result<Principal> {
        self.authenticate_within(headers, max_age.min(self.ttl))
            .await
    }

    /// Whether calls are authenticated by keys (with `--auth none` nothing can be revoked).
    pub fn uses_keys(&self) -> bool {
        self.mode == AuthMode::Keys
    }

    /// How long a key lookup is remembered.
    pub fn cache_ttl(&self) -> Duration {
        self.ttl
    }

    async fn authenticate_within(
        &self,
        headers: &HeaderMap,
        max_age: Duration,
    ) -> Result<Principal> {
        match self.mode {
            AuthMode::None => Ok(Principal {
                agent: agent_from_headers(headers)?,
                role: Role::Admin,
                customer_id: None,
            }),
            AuthMode::Keys => {
                let secret = secret_from_headers(headers)?;
                self.key_principal(secret, max_age).await?.ok_or_else(|| {
                    Error::unauthenticated(
                        unauthenticated::INVALID_API_KEY,
                        "the API key is unknown or revoked",
                    )
                })
            }
        }
    }

    async fn key_principal(&self, secret: &str, max_age: Duration) -> Result<Option<Principal>> {
        if !api_key::looks_like_secret(secret) {
            return Ok(None);
        }
        let hash = api_key::hash_secret(secret);
        if let Some(found) = self.cached(&hash, max_age) {
            return Ok(found);
        }
        let found = self
            .store
            .find_active_key(secret)
            .await?
            .map(|key| key.principal());
        self.remember(hash, found.clone());
        Ok(found)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<Principal>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, hash: &str, max_age: Duration) -> Option<Option<Principal>> {
        if max_age.is_zero() {
            return None;
        }
        let cache = self.lock();
        let (principal, read_at) = cache.get(hash)?;
        (read_at.elapsed() < max_age).then(|| principal.clone())
    }

    fn remember(&self, hash: String, principal: Option<Principal>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            let ttl = self.ttl;
            cache.retain(|_, (_, read_at)| read_at.elapsed() < ttl);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(hash, (principal, Instant::now()));
    }
}

/// The secret of `authorization: Bearer <secret>`.
fn secret_from_headers(headers: &HeaderMap) -> Result<&str> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(Error::unauthenticated(
            unauthenticated::MISSING_API_KEY,
            "this service needs an API key: send metadata `authorization: Bearer <key>`",
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(api_key::bearer_token)
        .ok_or_else(|| {
            Error::unauthenticated(
                unauthenticated::MALFORMED_API_KEY,
                "the authorization metadata must be `Bearer <key>`",
            )
        })
}

/// The acting agent of `--auth none`: `x-agent-id`, or `anonymous` when it is absent or blank.
pub fn agent_from_headers(headers: &HeaderMap) -> Result<String> {
    let Some(value) = headers.get(AGENT_HEADER) else {
        return Ok(ANONYMOUS.to_owned());
    };
    let agent = value
        .to_str()
        .map_err(|_| {
            Error::invalid(
                AGENT_HEADER,
                reason::INVALID_AGENT,
                "must be printable ASCII",
            )
        })?
        .trim();
    if agent.is_empty() {
        return Ok(ANONYMOUS.to_owned());
    }
    let mut violations = Violations::new();
    text::check_text(&mut violations, AGENT_HEADER, agent);
    Ok(violations.into_result(agent.to_owned())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_agent_of_auth_none_comes_from_metadata_or_is_anonymous() {
        let agent = |value: Option<&str>| {
            agent_from_headers(
                &value.map_or_else(HeaderMap::new, |v| headers(&[(AGENT_HEADER, v)])),
            )
        };
        assert_eq!(agent(Some(" ana ")).unwrap(), "ana");
        assert_eq!(agent(None).unwrap(), ANONYMOUS);
        assert_eq!(agent(Some("  ")).unwrap(), ANONYMOUS);
        assert!(agent(Some(&"a".repeat(2001))).is_err());
    }

    #[test]
    fn bearer_secrets_are_required_and_well_formed() {
        let reason = |h: HeaderMap| match secret_from_headers(&h) {
            Ok(secret) => secret.to_owned(),
            Err(Error::Unauthenticated { reason, .. }) => reason.to_owned(),
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(reason(HeaderMap::new()), unauthenticated::MISSING_API_KEY);
        assert_eq!(
            reason(headers(&[("authorization", "Basic eA==")])),
            unauthenticated::MALFORMED_API_KEY
        );
        assert_eq!(reason(headers(&[("authorization", "Bearer cc_x")])), "cc_x");
    }
}
