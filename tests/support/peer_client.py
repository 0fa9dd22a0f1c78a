"""A stdlib-only HTTP client run as another user (`setpriv ... python3 peer_client.py`).

    peer_client.py ADDRESS TOKEN           ADDRESS: 127.0.0.1:PORT, [::1]:PORT or unix:/PATH

Sends the requests of REQUESTS (every route of the API, the AWS SDK protocol included) and
prints one JSON line per request: method, path, status, body (text), target (SDK). It must run
under the system python3 with nothing but the standard library: the test venv may not be
readable by the user it runs as. Copied to a directory that user can read; never imported by
the tests.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys

SDK_AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/ssm/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "ab" * 32
)
SDK_BY_PATH = {"Path": "/", "Recursive": True, "WithDecryption": True}
SDK_GET = {"Name": "/peer/secret", "WithDecryption": True}
REQUESTS = [
    ("GET", "/ping", None, False),
    ("GET", "/healthz", None, False),
    ("GET", "/readyz", None, False),
    ("GET", "/metrics", None, False),
    ("GET", "/v1/parameters/peer/secret", None, True),
    ("GET", "/v1/parameters?path=/peer", None, True),
    ("GET", "/systemsmanager/parameters/get?name=/peer/secret&withDecryption=true", None, True),
    ("POST", "/v1/refresh", None, True),
    ("GET", "/no/such/endpoint", None, True),
    ("POST", "/", ("GetParametersByPath", SDK_BY_PATH), False),
    ("POST", "/", ("GetParameter", SDK_GET), False),
]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def connection(address: str) -> http.client.HTTPConnection:
    if address.startswith("unix:"):
        return UnixConnection(address[5:])
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=10)


def main() -> None:
    address, token = sys.argv[1], sys.argv[2]
    for method, path, sdk, with_token in REQUESTS:
        headers = {}
        body = None
        if with_token:
            headers["X-Aws-Parameters-Secrets-Token"] = token
        if sdk is not None:
            operation, request = sdk
            headers.update(
                {
                    "Content-Type": "application/x-amz-json-1.1",
                    "X-Amz-Target": "AmazonSSM." + operation,
                    "Authorization": SDK_AUTH,
                }
            )
            body = json.dumps(request)
        conn = connection(address)
        try:
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            text = reply.read().decode("utf-8", "replace")
            line = {"method": method, "path": path, "status": reply.status, "body": text}
            if sdk is not None:
                line["target"] = sdk[0]
            print(json.dumps(line))
        finally:
            conn.close()


if __name__ == "__main__":
    main()
