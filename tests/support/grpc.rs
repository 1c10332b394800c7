//! What the gRPC test binaries (tests/grpc.rs, tests/grpc_jobtask.rs) share: one `run` process
//! with the plaintext gRPC port, channels to it (plaintext h2c and TLS by content type), the
//! token metadata, a raw codec for bytes that are no message, the protobuf <-> JSON forms the
//! REST comparison needs, curl for REST, and spacectl from PyPI (hack/spacectl.sh).
//! Included with `#[path]` by those binaries only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    dead_code
)]

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cost_analysis_operator::api::grpc::pb;
use prost::Message;
use serde_json::{Value, json};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::support::{self, Operator, cluster, eventually, free_port};

pub const WAIT: Duration = Duration::from_secs(60);

pub struct Shim {
    pub op: Operator,
    pub port: u16,
    pub grpc_port: u16,
    pub tls: support::ServingCert,
}

/// One `run` process (controller + API shim with the plaintext gRPC port) for this binary.
pub fn shim() -> &'static Shim {
    static SHIM: OnceLock<Shim> = OnceLock::new();
    SHIM.get_or_init(|| {
        let c = cluster();
        let (port, grpc_port) = (free_port(), free_port());
        let tls = support::serving_cert(&c.dir, "grpc-shim", "cost-analysis-system");
        let identity = format!("grpc-{}", std::process::id());
        let op = Operator::start_command(
            c,
            "run",
            &identity,
            &[
                "--api-addr",
                &format!("127.0.0.1:{port}"),
                "--grpc-plaintext-addr",
                &format!("127.0.0.1:{grpc_port}"),
                "--tls-cert-file",
                &tls.cert.to_string_lossy(),
                "--tls-key-file",
                &tls.key.to_string_lossy(),
            ],
        );
        support::wait_for_leader(c, &identity, Duration::from_secs(60));
        Shim {
            op,
            port,
            grpc_port,
            tls,
        }
    })
}

pub async fn plaintext() -> Channel {
    let url = format!("http://127.0.0.1:{}", shim().grpc_port);
    eventually(WAIT, "the plaintext gRPC port", || {
        let url = url.clone();
        async move {
            Endpoint::from_shared(url)
                .unwrap()
                .connect_timeout(Duration::from_secs(3))
                .connect()
                .await
                .ok()
        }
    })
    .await
}

pub async fn over_tls() -> Channel {
    let s = shim();
    let tls = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&s.tls.pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://127.0.0.1:{}", s.port))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS gRPC channel")
}

pub fn with_token<M>(message: M, token: Option<&str>) -> tonic::Request<M> {
    let mut r = tonic::Request::new(message);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t.parse().unwrap());
    }
    r
}

/// Sends `bytes` as the message of the method at `path` (`/<service>/<method>`; tonic's client,
/// a codec that writes the bytes as they are) with `token`; the answer's status.
pub async fn raw_call_path(
    channel: Channel,
    path: &str,
    bytes: Vec<u8>,
    token: &str,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = axum::http::uri::PathAndQuery::try_from(path.to_string()).unwrap();
    grpc.unary(with_token(bytes, Some(token)), path, RawCodec)
        .await
        .unwrap_err()
}

pub struct RawCodec;
pub struct RawEncoder;
pub struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// The protobuf form of a JSON request, as SpaceONE's REST proxy makes it (`ParseDict`):
/// `None` when the JSON cannot be one (unknown field, wrong type), which only REST can send.
pub fn parse_dict(message: &str, request: &Value) -> Option<Vec<u8>> {
    let pool = prost_reflect::DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let desc = pool.get_message_by_name(message).unwrap();
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(true);
    let m =
        prost_reflect::DynamicMessage::deserialize_with_options(desc, request, &options).ok()?;
    Some(m.encode_to_vec())
}

/// A protobuf answer as proto3 JSON with the proto field names (`MessageToDict`).
pub fn message_to_dict(message: &str, bytes: &[u8]) -> Value {
    let pool = prost_reflect::DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let desc = pool.get_message_by_name(message).unwrap();
    let m = prost_reflect::DynamicMessage::decode(desc, bytes).unwrap();
    let options = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
    m.serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap()
}

/// Numbers compared by value: Struct numbers are doubles, REST JSON writes integers.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().map(|f| (f * 1e9).round() / 1e9)),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

/// A JobInfo / JobsInfo in proto3 JSON terms: a field at its default value ("", 0, [], false) is
/// the same as an absent one (REST writes `results: []` and `total_count: 0`, gRPC cannot tell).
pub fn without_defaults(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| {
                    !matches!(v, Value::Null | Value::Bool(false))
                        && v.as_str() != Some("")
                        && v.as_f64() != Some(0.0)
                        && v.as_array().is_none_or(|a| !a.is_empty())
                })
                .map(|(k, v)| (k.clone(), without_defaults(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_defaults).collect()),
        other => other.clone(),
    }
}

/// A REST call with curl, as tests/api.rs makes them.
pub fn rest(path: &str, token: &str, body: &Value) -> (u16, Value) {
    let s = shim();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&s.tls.cert)
        .args(["-X", "POST", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(body.to_string())
        .arg(format!("https://127.0.0.1:{}{path}", s.port))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// spacectl of one line of hack/spacectl.sh ("2": 2.0.10, "1": 1.8.11 with spaceone-api 1.8.7),
/// with HOME in a temporary folder of its own (removed when dropped).
pub struct Spacectl {
    pub line: String,
    bin: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl Spacectl {
    pub fn new(line: &str, tag: &str) -> Spacectl {
        let out = Command::new("bash")
            .arg(support::root().join("hack/spacectl.sh"))
            .args(["venv", line])
            .output()
            .expect("hack/spacectl.sh");
        assert!(
            out.status.success(),
            "spacectl virtualenv: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
        let home = cluster()
            .dir
            .join(format!("spacectl-home-{}-{tag}-{line}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        Spacectl {
            line: line.into(),
            bin,
            home,
        }
    }

    /// Runs spacectl: whether it exited 0, and its output and error text.
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(self.bin.join("spacectl"))
            .args(args)
            .env("HOME", &self.home)
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin.display()))
            .output()
            .expect("spacectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Runs spacectl, which must exit 0; its text.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args);
        assert!(ok, "spacectl {} {args:?}: {text}", self.line);
        text
    }

    /// A configuration with `token` as the api_key and the shim's plaintext port as the
    /// cost_analysis endpoint.
    pub fn configure(&self, token: &str) {
        let endpoint = format!("grpc://127.0.0.1:{}", shim().grpc_port);
        self.ok(&["config", "init", "-e", "test"]);
        self.ok(&["config", "set", "api_key", token]);
        self.ok(&["config", "endpoint", "add", "cost_analysis", &endpoint]);
    }
}

impl Drop for Spacectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
