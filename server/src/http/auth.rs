//! Who may read stats: holders of a configured API key, each limited to the
//! ad ids of its scope, or, when no key is configured, clients on the
//! loopback interface only (with every ad in scope). The client is the
//! address behind any trusted proxies, not the TCP peer: a same-host reverse
//! proxy or sidecar is a loopback peer for every client it forwards.
//!
//! [`require_access`] checks a request and leaves the matched [`Scope`] in
//! its extensions; handlers take it as an extractor and check each ad id.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::AppState;
use crate::keys::{constant_time_eq, ApiKey, Scope, Secret};

/// The access rule for the stats routes.
#[derive(Clone, Debug)]
pub enum Access {
    /// Any of these bearer keys, each with its scope. `Debug` redacts them.
    Keys(Vec<ApiKey>),
    /// No keys configured: loopback clients only.
    LoopbackOnly,
}

impl Access {
    /// Unscoped keys (`--api-keys`): each may read every ad.
    pub fn from_keys(keys: &[String]) -> Self {
        let secrets: Vec<Secret> = keys.iter().map(|k| Secret::new(k.as_str())).collect();
        Self::from_parts(&secrets, Vec::new())
    }

    /// Unscoped keys plus the scoped keys of a keys file. Blank unscoped
    /// keys are ignored; with no key at all, loopback clients only.
    pub fn from_parts(unscoped: &[Secret], scoped: Vec<ApiKey>) -> Self {
        let mut keys: Vec<ApiKey> = unscoped
            .iter()
            .map(|k| k.expose().trim())
            .filter(|k| !k.is_empty())
            .map(|k| ApiKey {
                secret: Secret::new(k),
                scope: Scope::All,
            })
            .collect();
        keys.extend(scoped);
        if keys.is_empty() {
            Access::LoopbackOnly
        } else {
            Access::Keys(keys)
        }
    }

    /// Checks one request's `Authorization` header and client address (the
    /// one behind trusted proxies), and answers with the scope the caller
    /// may read.
    pub(crate) fn check(
        &self,
        authorization: Option<&[u8]>,
        client: Option<IpAddr>,
    ) -> Result<Scope, ApiError> {
        match self {
            Access::LoopbackOnly => match client {
                Some(ip) if ip.is_loopback() => Ok(Scope::All),
                _ => Err(ApiError::Forbidden(
                    "no API keys are configured, so stats are served to loopback clients only",
                )),
            },
            Access::Keys(keys) => {
                let presented = authorization
                    .and_then(|v| v.strip_prefix(b"Bearer "))
                    .ok_or(ApiError::Unauthorized)?;
                // Every key is compared, each in constant time, so the
                // answer's timing says nothing about which bytes matched.
                let mut matched: Option<&ApiKey> = None;
                for key in keys {
                    let equal = constant_time_eq(key.secret.expose().as_bytes(), presented);
                    matched = matched.or(equal.then_some(key));
                }
                matched
                    .map(|k| k.scope.clone())
                    .ok_or(ApiError::Unauthorized)
            }
        }
    }
}

/// Middleware guarding the stats routes; puts the caller's [`Scope`] in the
/// request extensions.
pub async fn require_access(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = super::guard::client_addr(&state.guard, &request);
    let authorization = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    let scope = state.access.check(authorization, client)?;
    request.extensions_mut().insert(scope);
    Ok(next.run(request).await)
}

/// Handlers take the caller's scope as an extractor. A route without
/// `require_access` in front has no scope and answers 403.
impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Scope>()
            .cloned()
            .ok_or(ApiError::Forbidden("this route grants no access to stats"))
    }
}

/// Refuses an ad id outside the caller's scope.
pub fn check_scope(scope: &Scope, ad_id: &str) -> Result<(), ApiError> {
    if scope.allows(ad_id) {
        Ok(())
    } else {
        Err(ApiError::OutOfScope(ad_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::parse_keys_file;

    fn addr(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_only_without_keys() {
        let access = Access::from_keys(&[" ".into()]);
        assert_eq!(access.check(None, addr("127.0.0.1")).unwrap(), Scope::All);
        assert!(access.check(None, addr("::1")).is_ok());
        assert!(matches!(
            access.check(None, addr("10.0.0.1")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(access.check(None, None).is_err());
    }

    #[test]
    fn keys_are_required_from_everyone() {
        let access = Access::from_keys(&["k1".into(), "secret-2".into()]);
        let local = addr("127.0.0.1");
        assert!(matches!(
            access.check(None, local),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            access.check(Some(b"Bearer nope"), local),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            access.check(Some(b"secret-2"), local),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            access.check(Some(b"Bearer secret-"), local),
            Err(ApiError::Unauthorized)
        ));
        assert!(access
            .check(Some(b"Bearer secret-2"), addr("10.0.0.1"))
            .is_ok());
        assert_eq!(access.check(Some(b"Bearer k1"), local).unwrap(), Scope::All);
    }

    #[test]
    fn a_scoped_key_yields_its_scope() {
        let file = parse_keys_file("acme-key-0123456789 acme-\n").unwrap();
        let access = Access::from_parts(&[Secret::new("wild")], file);
        assert_eq!(
            access
                .check(Some(b"Bearer acme-key-0123456789"), None)
                .unwrap(),
            Scope::Prefixes(vec!["acme-".into()])
        );
        assert_eq!(
            access.check(Some(b"Bearer wild"), None).unwrap(),
            Scope::All
        );
        let shown = format!("{access:?}");
        assert!(!shown.contains("acme-key-0123456789") && !shown.contains("wild"));
    }
}
