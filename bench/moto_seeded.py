"""A moto server whose SSM parameters are put in-process, before it starts listening.

Seeding over HTTP (boto3 PutParameter against moto_server) runs at ~140 puts/s here, so 10,000
parameters would take over a minute; moto's backend API puts them in well under a second. The
benchmark's own calls then go over HTTP like the agent's.

    python -m bench.moto_seeded PORT SPEC.json
SPEC.json: [[name, value, secure], ...]; prints "seeded N in S s" once it answers.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer
from moto.ssm.models import ssm_backends

from tests.support.moto import REGION


def seed(spec: list[tuple[str, str, bool]]) -> None:
    backend = ssm_backends[DEFAULT_ACCOUNT_ID][REGION]
    for name, value, secure in spec:
        backend.put_parameter(
            name=name,
            description="",
            value=value,
            parameter_type="SecureString" if secure else "String",
            allowed_pattern="",
            keyid="alias/aws/ssm",  # what moto picks when none is given
            overwrite=True,
            tags=[],
            data_type="text",
            tier=None,
            policies=None,
        )


def main() -> None:
    port, spec_path = int(sys.argv[1]), Path(sys.argv[2])
    spec = [(str(n), str(v), bool(s)) for n, v, s in json.loads(spec_path.read_text())]
    started = time.monotonic()
    seed(spec)
    seconds = time.monotonic() - started
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(f"seeded {len(spec)} in {seconds:.3f} s", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
