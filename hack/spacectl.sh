#!/usr/bin/env bash
# spacectl itself against the operator's gRPC service (issue 12).
#   hack/spacectl.sh venv [VERSION_SET]   create (cached) target/spacectl-venv-<set> and print its bin dir
#   VERSION_SET: "2" (default: spacectl 2.0.10 with the pins of docs/spaceone-grpc.md) or
#                "1" (the 1.x line matching the seed: spacectl 1.8.x / spaceone-core 1.8.x)
# tests/grpc.rs and tests/grpc_jobtask.rs (tests/support/grpc.rs) call `venv 2` and `venv 1` and
# then drive spacectl with HOME in a temporary folder.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-venv}
set_=${2:-2}
case "$set_" in
  2) pins=(spacectl==2.0.10 spaceone-core==2.0.144 protobuf==3.20.3 grpcio-reflection==1.48.2
           grpcio-health-checking==1.48.2 googleapis-common-protos==1.56.4) ;;
  1) pins=(spacectl==1.8.11 spaceone-core==1.8.11 spaceone-api==1.8.7 protobuf==3.20.3) ;;
  *) echo "unknown version set $set_" >&2; exit 2 ;;
esac
venv="$root/target/spacectl-venv-$set_"
stamp="$venv/.pins"
case "$cmd" in
  venv)
    if [ ! -x "$venv/bin/spacectl" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
      rm -rf "$venv"
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}" >&2
      echo "${pins[*]}" >"$stamp"
    fi
    echo "$venv/bin"
    ;;
  *) echo "usage: $0 venv [1|2]" >&2; exit 2 ;;
esac
