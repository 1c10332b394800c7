//! A scripted Kubernetes API server for unit tests of the I/O shells (the controller's apply step,
//! the API shim's cancel write), in the manner of kube-rs's `controller-rs` fixtures: the test
//! says which requests must come, in which order, checks each one, and answers it. A request that
//! was not expected, or one expected that never comes, fails the test.

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
        self.expect_with(method, path, |_| (code, reply)).await
    }

    /// Takes the next `wanted.len()` requests in any order (requests the shell sends together),
    /// each matched by method and path to one of `wanted` and answered with its code and reply.
    /// Returns what was seen, in the order of `wanted`.
    pub async fn expect_together(&mut self, wanted: &[(&str, &str, u16, Value)]) -> Vec<Seen> {
        let mut seen: Vec<Option<Seen>> = wanted.iter().map(|_| None).collect();
        for _ in wanted {
            let (request, send) = self.next_request().await;
            let slot = wanted
                .iter()
                .zip(seen.iter())
                .position(|((m, p, _, _), s)| {
                    s.is_none()
                        && request.method == *m
                        && request.path.split('?').next() == Some(*p)
                })
                .unwrap_or_else(|| panic!("unexpected request: {request:?}; wanted {wanted:?}"));
            let (_, _, code, reply) = &wanted[slot];
            answer(send, *code, reply);
            seen[slot] = Some(request);
        }
        seen.into_iter().flatten().collect()
    }

    /// Takes the next request, which must be `method` `path`, and answers what `reply` says for
    /// it (its code and body).
    pub async fn expect_with(
        &mut self,
        method: &str,
        path: &str,
        reply: impl FnOnce(&Seen) -> (u16, Value),
    ) -> Seen {
        let (request, send) = self.next_request().await;
        assert_eq!(
            (
                request.method.as_str(),
                request.path.split('?').next().unwrap_or("")
            ),
            (method, path),
            "unexpected request: {request:?}"
        );
        let (code, body) = reply(&request);
        answer(send, code, &body);
        request
    }

    async fn next_request(&mut self) -> (Seen, tower_test::mock::SendResponse<Response<Body>>) {
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.handle.next_request(),
        )
        .await
        .unwrap_or_else(|_| panic!("expected a request, but none came"));
        let Some((request, send)) = next else {
            panic!("expected a request, but the client is gone");
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
        (seen, send)
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

fn answer(send: tower_test::mock::SendResponse<Response<Body>>, code: u16, reply: &Value) {
    let response = Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(reply).expect("JSON")))
        .expect("response");
    send.send_response(response);
}

/// A Kubernetes `Status` failure answer with `code`.
pub fn status(code: u16, reason: &str) -> Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code,
    })
}
