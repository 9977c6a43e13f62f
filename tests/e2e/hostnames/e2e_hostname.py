"""``[core] hostname_callable`` of the live stacks: each component reports the name it was given.

Several workers and triggerers share this machine; Airflow records each task's and triggerer's
hostname, and the tests tell them apart by it. Only this module is in this folder, so putting
it on the components' PYTHONPATH does not make anything else importable.
"""

from __future__ import annotations

import os
import socket

ENV = "AIRFLOW_BATCHES_E2E_HOSTNAME"


def hostname() -> str:
    return os.environ.get(ENV) or socket.getfqdn()
