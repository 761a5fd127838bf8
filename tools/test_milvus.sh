#!/usr/bin/env bash
# The Milvus server the fingerprint store's tests (and tools/bench_milvus.py --uri) talk to:
# the standalone server of the `milvus` package, which the dev extra installs (`milvus-server`
# in the virtualenv), started in the background with its data in $PUF_TEST_MILVUS_DATA
# (default /tmp/puf_test_milvus) unless a server already answers. Idempotent: CI runs it
# before the tests; the tests' fixture runs it too when no server answers, and stops what it
# started.
#
#   tools/test_milvus.sh [MILVUS_SERVER]   # default: this checkout's .venv/bin/milvus-server
#   kill -INT "$(cat /tmp/puf_test_milvus/server.pid)"   # stop it (as Ctrl+C: SIGTERM leaves the server running)
#
# The tests find the server by PUF_TEST_MILVUS, whose default is what this script starts:
#   http://127.0.0.1:19530
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=${1:-.venv/bin/milvus-server}
DATA=${PUF_TEST_MILVUS_DATA:-/tmp/puf_test_milvus}
URI=http://127.0.0.1:19530
if [ ! -x "$SERVER" ]; then
    echo "no $SERVER: install the dev extra (pip install -c constraints.txt -e '.[all,dev]')" >&2
    exit 1
fi
PYTHON=$(dirname "$SERVER")/python
answers() {
    "$PYTHON" - "$URI" >/dev/null 2>&1 <<'PY'
import sys
from pymilvus import MilvusClient
MilvusClient(sys.argv[1], timeout=5).list_databases()
PY
}
if answers; then
    echo "Milvus answers at $URI"
    exit 0
fi
mkdir -p "$DATA"
setsid "$SERVER" --data "$DATA" >"$DATA/server.log" 2>&1 </dev/null &
echo $! >"$DATA/server.pid"
for _ in $(seq 60); do
    if answers; then
        echo "Milvus server $("$PYTHON" -c 'import milvus; print(milvus.__version__)' 2>/dev/null) is up at $URI (pid $(cat "$DATA/server.pid"), data $DATA)"
        exit 0
    fi
    if ! kill -0 "$(cat "$DATA/server.pid")" 2>/dev/null; then
        echo "the Milvus server stopped at its start:" >&2
        tail -n 20 "$DATA/server.log" >&2
        exit 1
    fi
    sleep 2
done
echo "the Milvus server did not answer at $URI within 120 s: see $DATA/server.log" >&2
exit 1
