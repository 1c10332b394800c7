#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use crate::api::grpc::convert::to_struct;
use prost::Message;
use serde_json::json;

/// A stat's Struct written from the engine's object: the same bytes prost writes for the
/// `prost_types::Struct` of the same object (keys sorted, whatever order the object has; every
/// kind of value, nested; an empty key left out of its entry; numbers as doubles).
#[test]
fn a_struct_is_what_prost_writes() {
    let objects = [
        json!({}),
        json!({"results": []}),
        json!({"results": [{"z": 1, "a": 2.5, "m": null, "b": true, "f": false}],
               "total_count": 3}),
        json!({"": "empty key", "nested": {"list": [[1, "x"], {}, {"k": [null]}], "s": ""},
               "neg": -7, "big": 1e300, "u": 18_446_744_073_709_551_615_u64,
               "text": "é and \"quotes\""}),
    ];
    for object in objects {
        let m = object.as_object().unwrap();
        let want = to_struct(m.clone()).encode_to_vec();
        assert_eq!(Proto::of_struct(m).0, want, "{object}");
        assert_eq!(Proto::of_struct(m).0.len(), struct_len(m), "{object}");
    }
}

/// The servers' answer type passes its bytes through prost unchanged.
#[test]
fn proto_is_its_bytes() {
    let bytes = job_pb::JobsInfo {
        results: vec![job_pb::JobInfo {
            job_id: "job-1".into(),
            status: 3,
            ..Default::default()
        }],
        total_count: -1,
    }
    .encode_to_vec();
    let proto = Proto(bytes.clone());
    assert_eq!(proto.encoded_len(), bytes.len());
    assert_eq!(proto.encode_to_vec(), bytes);
    let mut skipped = Proto::decode(&bytes[..]).unwrap();
    assert!(skipped.0.is_empty(), "decoding skips the fields");
    skipped.clear();
}
