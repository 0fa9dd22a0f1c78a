"""Fleet mode: many agents, one watcher, records through Valkey/Redis (docs/fleet.md).

The facade is `agent.fleet.fleet.Fleet`; the app builds it when the config has `[fleet]`.
"""
