"""Scripts run by real third-party clients in their own virtualenv (``scripts/client_venv.py``).

They import only their client: they run under ``.clients-venv/bin/python``, never under the
project's environment, and talk to the emulator at ``ANTHROPIC_BASE_URL``.
"""
