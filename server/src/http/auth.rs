//! Who may read stats: holders of a configured API key, or, when no key is
//! configured, clients on the loopback interface only.

use std::net::SocketAddr;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::AppState;

/// The access rule for the stats routes.
#[derive(Clone, Debug)]
pub enum Access {
    /// Any of these bearer keys.
    Keys(Vec<String>),
    /// No keys configured: loopback clients only.
    LoopbackOnly,
}

impl Access {
    pub fn from_keys(keys: &[String]) -> Self {
        let keys: Vec<String> = keys
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            Access::LoopbackOnly
        } else {
            Access::Keys(keys)
        }
    }

    /// Checks one request's `Authorization` header and peer address.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        peer: Option<SocketAddr>,
    ) -> Result<(), ApiError> {
        match self {
            Access::LoopbackOnly => match peer {
                Some(addr) if addr.ip().is_loopback() => Ok(()),
                _ => Err(ApiError::Forbidden(
                    "no API keys are configured, so stats are served to loopback clients only",
                )),
            },
            Access::Keys(keys) => {
                let presented = authorization
                    .and_then(|v| v.strip_prefix(b"Bearer "))
                    .ok_or(ApiError::Unauthorized)?;
                // Compare against every key, each in constant time, so the
                // answer's timing says nothing about which bytes matched.
                let matched = keys.iter().fold(false, |any, key| {
                    any | constant_time_eq(key.as_bytes(), presented)
                });
                if matched {
                    Ok(())
                } else {
                    Err(ApiError::Unauthorized)
                }
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware guarding the stats routes.
pub async fn require_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let extensions = request.extensions();
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0));
    let authorization = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    state.access.check(authorization, peer)?;
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_only_without_keys() {
        let access = Access::from_keys(&[" ".into()]);
        assert!(access.check(None, addr("127.0.0.1:5000")).is_ok());
        assert!(access.check(None, addr("[::1]:5000")).is_ok());
        assert!(matches!(
            access.check(None, addr("10.0.0.1:5000")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(access.check(None, None).is_err());
    }

    #[test]
    fn keys_are_required_from_everyone() {
        let access = Access::from_keys(&["k1".into(), "secret-2".into()]);
        let local = addr("127.0.0.1:1");
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
            .check(Some(b"Bearer secret-2"), addr("10.0.0.1:1"))
            .is_ok());
        assert!(access.check(Some(b"Bearer k1"), local).is_ok());
    }
}
