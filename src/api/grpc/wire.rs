//! The gRPC answers as protobuf bytes, written straight from the engine's view of a record: one
//! mapping for every Info message (JobInfo, JobTaskInfo) and every list (JobsInfo,
//! JobTasksInfo), driven by the resource's table (each field's Info number says where its value
//! goes), and a stat's `google.protobuf.Struct` written from the engine's rows. The bytes are
//! what prost would write for the generated message holding the same values (fields in number
//! order, defaults left out, Struct keys sorted), without building that message: owned strings
//! for every field of every row and a second pass to encode them made a gRPC list slower than
//! REST's JSON text.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use serde_json::{Map, Value};
use spaceone_query::Schema;
use spaceone_query::calls::{AnswerForm, InfoRow, InfoValue, JobsInfo, info_time, write_info_time};

use super::pb::job as job_pb;

/// An encoded protobuf message, the servers' answer type (build.rs maps every answer message to
/// it). Decoding one is not supported (fields are skipped): clients decode the generated messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proto(pub Vec<u8>);

impl prost::Message for Proto {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl crate::api::service::WireSize for Proto {
    fn wire_size(&self) -> usize {
        self.0.len()
    }
}

impl AnswerForm for Proto {
    /// Any other answer (the engine's are objects) as a Struct; the engine calls
    /// [`Self::from_jobs`] and [`Self::from_info`] for its Info answers.
    fn from_serialize(s: &impl serde::Serialize) -> Self {
        match serde_json::to_value(s) {
            Ok(Value::Object(m)) => Proto::of_struct(&m),
            _ => Proto::default(),
        }
    }

    fn from_jobs(rows: &JobsInfo<'_>) -> Self {
        let mut out = Vec::with_capacity(rows.rows().size_hint().0.saturating_mul(192));
        let mut scratch = Vec::with_capacity(256);
        let status = status_numbers(rows.schema());
        for row in rows.rows() {
            scratch.clear();
            write_info(&row, status, &mut scratch);
            put_bytes(1, &scratch, &mut out);
        }
        put_int32(2, i32::try_from(rows.total()).unwrap_or(i32::MAX), &mut out);
        Proto(out)
    }

    fn from_info(row: &InfoRow<'_>) -> Self {
        let mut out = Vec::with_capacity(256);
        write_info(row, status_numbers(row.schema()), &mut out);
        Proto(out)
    }
}

impl Proto {
    /// A stat's answer (an object) as `google.protobuf.Struct`.
    pub fn of_struct(m: &Map<String, Value>) -> Self {
        let mut out = Vec::with_capacity(struct_len(m));
        write_struct(m, &mut out);
        Proto(out)
    }
}

/// The status enum's numbers of the resource's Info message, by name (JobTaskInfo's are not
/// JobInfo's).
fn status_numbers(schema: &Schema) -> fn(&str) -> i32 {
    fn job(name: &str) -> i32 {
        job_pb::job_info::Status::from_str_name(name).map_or(0, |s| s as i32)
    }
    fn task(name: &str) -> i32 {
        job_pb::job_task_info::Status::from_str_name(name).map_or(0, |s| s as i32)
    }
    fn none(_: &str) -> i32 {
        0
    }
    match schema.resource {
        "Job" => job,
        "JobTask" => task,
        _ => none,
    }
}

/// One Info message's fields (without its own key and length).
fn write_info(row: &InfoRow<'_>, status: fn(&str) -> i32, out: &mut Vec<u8>) {
    for (field, value) in row.values() {
        let Some(tag) = field.def().info else {
            continue;
        };
        match value {
            InfoValue::Str(s) => put_str(tag, s, out),
            InfoValue::Enum(name) => put_int32(tag, status(name), out),
            InfoValue::Int(n) => put_int32(tag, saturating_i32(n), out),
            InfoValue::Time(None) | InfoValue::Struct(None) => {}
            InfoValue::Time(Some(ms)) => {
                let mut buf = [0u8; 24];
                match write_info_time(ms, &mut buf) {
                    Some(text) => put_str(tag, text, out),
                    None => put_str(tag, &info_time(ms), out),
                }
            }
            // The record keeps its options as compact JSON text of an object; text that is not
            // one (never stored) is left out, as the JSON route's `null` reads.
            InfoValue::Struct(Some(text)) => {
                if let Ok(Value::Object(m)) = serde_json::from_str(text) {
                    put_struct(tag, &m, out);
                }
            }
        }
    }
}

/// An int64 count in an int32 field, saturating as the JSON route's float cast does.
fn saturating_i32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })
}

/// A proto3 string field (left out when empty).
fn put_str(tag: u32, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        put_bytes(tag, s.as_bytes(), out);
    }
}

/// A length-delimited field, always written (a message, a set oneof member).
fn put_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A proto3 int32 or enum field (left out when 0); negative numbers are sign-extended to ten
/// bytes, as protobuf writes them.
fn put_int32(tag: u32, n: i32, out: &mut Vec<u8>) {
    if n != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(i64::from(n) as u64, out);
    }
}

/// A length-delimited field's size with a one-byte key (every tag here is below 16); lengths
/// saturate rather than wrap (no answer comes near).
fn delimited_len(len: usize) -> usize {
    encoded_len_varint(len as u64)
        .saturating_add(len)
        .saturating_add(1)
}

/// The entries of a Struct in prost's order (its `fields` map is a BTreeMap: sorted by key).
fn sorted(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    entries
}

/// The length of a Struct's fields.
fn struct_len(m: &Map<String, Value>) -> usize {
    m.iter()
        .map(|(k, v)| delimited_len(entry_len(k, v)))
        .fold(0, usize::saturating_add)
}

/// One map entry: its key (left out when empty, as prost does) and its value (always set).
fn entry_len(k: &str, v: &Value) -> usize {
    let key = if k.is_empty() {
        0
    } else {
        delimited_len(k.len())
    };
    key.saturating_add(delimited_len(value_len(v)))
}

/// The length of a `google.protobuf.Value`'s fields (exactly one member of its `kind`).
fn value_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 2,
        Value::Number(_) => 9,
        Value::String(s) => delimited_len(s.len()),
        Value::Array(items) => delimited_len(list_len(items)),
        Value::Object(m) => delimited_len(struct_len(m)),
    }
}

fn list_len(items: &[Value]) -> usize {
    items
        .iter()
        .map(|v| delimited_len(value_len(v)))
        .fold(0, usize::saturating_add)
}

/// A Struct field of a message.
fn put_struct(tag: u32, m: &Map<String, Value>, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(struct_len(m) as u64, out);
    write_struct(m, out);
}

/// A Struct's fields: one map entry (field 1) per key.
fn write_struct(m: &Map<String, Value>, out: &mut Vec<u8>) {
    for (k, v) in sorted(m) {
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(entry_len(k, v) as u64, out);
        put_str(1, k, out);
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(value_len(v) as u64, out);
        write_value(v, out);
    }
}

/// A Value's fields: null 1, number 2, string 3, bool 4, struct 5, list 6.
fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => {
            encode_key(1, WireType::Varint, out);
            encode_varint(0, out);
        }
        Value::Number(n) => {
            encode_key(2, WireType::SixtyFourBit, out);
            out.put_f64_le(n.as_f64().unwrap_or(0.0));
        }
        Value::String(s) => put_bytes(3, s.as_bytes(), out),
        Value::Bool(b) => {
            encode_key(4, WireType::Varint, out);
            encode_varint(u64::from(*b), out);
        }
        Value::Object(m) => put_struct(5, m, out),
        Value::Array(items) => {
            encode_key(6, WireType::LengthDelimited, out);
            encode_varint(list_len(items) as u64, out);
            for item in items {
                encode_key(1, WireType::LengthDelimited, out);
                encode_varint(value_len(item) as u64, out);
                write_value(item, out);
            }
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
