"""Telling the app: a signal to its process (`signals.py`), then `notify.command`
(`commands.py`), coalesced by `output.py`; and systemd's sd_notify (`systemd.py`)."""

from agent.outputs.notify.output import NotifyOutput, build_notify
from agent.outputs.notify.signals import Delivery
from agent.outputs.notify.systemd import systemd_notifier_from_env

__all__ = ["Delivery", "NotifyOutput", "build_notify", "systemd_notifier_from_env"]
