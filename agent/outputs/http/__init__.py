"""The localhost HTTP API and the optional ops listener.

`server.py` runs the API (guards in `server.Guard`, route families in `routes/`), `ops_server.py`
the second listener, `ondemand.py` the cache of names fetched on first request. The AWS SDK
protocol's rules live in `ssm_protocol.py`, which does no I/O.
"""

from agent.outputs.http.connections import raise_open_file_limit
from agent.outputs.http.limits import TokenBucket
from agent.outputs.http.listen import ListenError
from agent.outputs.http.ondemand import OnDemandCache
from agent.outputs.http.ops_server import OpsServer
from agent.outputs.http.server import HttpServer, HttpStartError

__all__ = [
    "HttpServer",
    "HttpStartError",
    "ListenError",
    "OnDemandCache",
    "OpsServer",
    "TokenBucket",
    "raise_open_file_limit",
]
