#!/usr/bin/env python3
"""Decodes the serialized descriptors that the published `spaceone-api` package embeds in its
`*_pb2.py` files (the package ships no .proto files) and prints them in a canonical JSON form:
per file its name, package, dependencies, and per message/enum/service every field's name,
number, label, type, type name and oneof. `proto/published.json` is this script's output for
spaceone-api==1.8.7; the Rust test `api::grpc::proto::tests::protos_match_the_published_descriptors`
compares our compiled protos with it.

  usage: hack/proto_published.py SITE_PACKAGES > proto/published.json
  (hack/proto-check.sh makes the virtualenv and runs both steps.)
"""
import ast
import json
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

FILES = [
    "spaceone/api/core/v1/query_pb2.py",
    "spaceone/api/cost_analysis/v1/job_pb2.py",
    "spaceone/api/cost_analysis/v1/job_task_pb2.py",
]
LABELS = {1: "optional", 2: "required", 3: "repeated"}


def serialized(path):
    """The bytes literal handed to AddSerializedFile(...) or FileDescriptor(serialized_pb=...)."""
    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name == "AddSerializedFile" and node.args:
                return ast.literal_eval(node.args[0])
            if name == "FileDescriptor":
                for kw in node.keywords:
                    if kw.arg == "serialized_pb":
                        return ast.literal_eval(kw.value)
    raise SystemExit(f"{path}: no serialized descriptor found")


def message(m, prefix, out):
    full = f"{prefix}.{m.name}"
    oneofs = [o.name for o in m.oneof_decl]
    out["messages"][full] = [
        {
            "name": f.name,
            "number": f.number,
            "label": LABELS[f.label],
            "type": descriptor_pb2.FieldDescriptorProto.Type.Name(f.type),
            "type_name": f.type_name,
            "oneof": oneofs[f.oneof_index] if f.HasField("oneof_index") else None,
        }
        for f in m.field
    ]
    for e in m.enum_type:
        out["enums"][f"{full}.{e.name}"] = {v.name: v.number for v in e.value}
    for n in m.nested_type:
        message(n, full, out)


def canonical(fd):
    out = {"name": fd.name, "package": fd.package, "dependency": list(fd.dependency),
           "messages": {}, "enums": {}, "services": {}}
    for m in fd.message_type:
        message(m, "." + fd.package, out)
    for e in fd.enum_type:
        out["enums"][f".{fd.package}.{e.name}"] = {v.name: v.number for v in e.value}
    for s in fd.service:
        out["services"][f".{fd.package}.{s.name}"] = {
            m.name: [m.input_type, m.output_type] for m in s.method
        }
    return out


def main():
    site = Path(sys.argv[1])
    files = []
    for rel in FILES:
        fd = descriptor_pb2.FileDescriptorProto.FromString(serialized(site / rel))
        files.append(canonical(fd))
    json.dump({"source": "spaceone-api==1.8.7 (PyPI)", "files": files}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
