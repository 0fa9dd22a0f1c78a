"""The AWS CLI (PyPI `awscli`, unmodified, from the test extra) run as an app would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

AWS = Path(sys.executable).parent / "aws"
Completed = subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class AwsCli:
    """`aws SERVICE ...` with the service's endpoint in `endpoint_variable` (e.g.
    AWS_ENDPOINT_URL_SSM), no global AWS_ENDPOINT_URL, no config or credentials files, one
    attempt; `env` adds to this process's environment."""

    service: str
    endpoint_variable: str
    env: Mapping[str, str] = field(default_factory=dict)

    def run(self, endpoint: str, *args: str) -> Completed:
        env = {
            **os.environ,
            **self.env,
            self.endpoint_variable: endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_RETRY_MODE": "standard",
            "AWS_MAX_ATTEMPTS": "1",
        }
        env.pop("AWS_ENDPOINT_URL", None)
        return subprocess.run(
            [str(AWS), self.service, *args], capture_output=True, text=True, env=env, timeout=60
        )

    def both(self, endpoint: str, moto_url: str, *args: str) -> tuple[Completed, Completed]:
        """The same command through the agent and against moto, run side by side."""
        with ThreadPoolExecutor(2) as pool:
            ours = pool.submit(self.run, endpoint, *args)
            theirs = pool.submit(self.run, moto_url, *args)
            return ours.result(), theirs.result()
