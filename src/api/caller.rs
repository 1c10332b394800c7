//! Who is calling: the inputs authentication needs, taken out of an HTTP request so that no borrow
//! of its (non-`Sync`) body is held across an await. Shared by the HTTP adapters.

use axum::http::HeaderMap;

use crate::auth::PeerIdentity;

pub struct Caller {
    peer: PeerIdentity,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            peer: parts
                .extensions
                .get::<PeerIdentity>()
                .cloned()
                .unwrap_or_default(),
            headers: parts.headers.clone(),
        })
    }
}

impl Caller {
    pub fn new(peer: PeerIdentity, headers: HeaderMap) -> Self {
        Caller { peer, headers }
    }

    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}
