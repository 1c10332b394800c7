//! A scripted Kubernetes API server for unit tests of the I/O shells (the controller's apply step,
//! the API shim's cancel write), in the manner of kube-rs's `controller-rs` fixtures: the test
//! says which requests must come, in which order, checks each one, and answers it. A request that
//! was not expected, or one expected that never comes, fails the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One request the shell sends: method, path (and query), and its JSON body.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
}

pub struct FakeApiServer {
    handle: Handle,
}

/// A client whose requests go to the returned fake.
pub fn client() -> (Client, FakeApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), FakeApiServer { handle })
}

impl FakeApiServer {
    /// Waits for the next request (at most 5 s), hands it to `check`, and answers `code` with
    /// `reply`. Returns what was seen.
    pub async fn expect(&mut self, method: &str, path: &str, code: u16, reply: Value) -> Seen {
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.handle.next_request(),
        )
        .await
        .unwrap_or_else(|_| panic!("expected {method} {path}, but no request came"));
        let Some((request, send)) = next else {
            panic!("expected {method} {path}, but the client is gone");
        };
        let seen = Seen {
            method: request.method().to_string(),
            path: request
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default(),
            body: {
                let bytes = request.into_body().collect_bytes().await.expect("body");
                if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("a JSON body")
                }
            },
        };
        assert_eq!(
            (
                seen.method.as_str(),
                seen.path.split('?').next().unwrap_or("")
            ),
            (method, path),
            "unexpected request: {seen:?}"
        );
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&reply).expect("JSON")))
            .expect("response");
        send.send_response(response);
        seen
    }

    /// Asserts that no further request comes within `ms` milliseconds.
    pub async fn expect_nothing_more(&mut self, ms: u64) {
        if let Ok(Some((request, _))) = tokio::time::timeout(
            std::time::Duration::from_millis(ms),
            self.handle.next_request(),
        )
        .await
        {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

/// A Kubernetes `Status` failure answer with `code`.
pub fn status(code: u16, reason: &str) -> Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code,
    })
}
