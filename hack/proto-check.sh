#!/usr/bin/env bash
# Checks proto/ against the descriptors the published spaceone-api 1.8.7 package embeds:
# installs it (cached virtualenv under target/), regenerates proto/published.json with
# hack/proto_published.py, fails if that differs from the committed file, then runs the Rust
# test that compares our compiled protos with it field by field.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/target/pyvenv/spaceone-api"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import spaceone.api' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps spaceone-api==1.8.7 protobuf==3.20.3
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$venv/bin/python" "$root/hack/proto_published.py" "$site" | diff -u "$root/proto/published.json" -
cd "$root" && cargo test --quiet --lib api::grpc::tests::protos_match_the_published_descriptors
