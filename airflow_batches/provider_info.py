"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_batches._version import __version__

_HOOK = "airflow_batches.hooks.batches.MessageBatchesHook"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-batches",
        "name": "Message Batches",
        "description": (
            "Run Message Batches API jobs from Airflow: submit any number of requests, wait "
            "without holding a worker, fetch results to object storage with a cost manifest."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Message Batches",
                "external-doc-url": "https://docs.anthropic.com/en/docs/build-with-claude/batch-processing",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Message Batches",
                "python-modules": ["airflow_batches.hooks.batches"],
            }
        ],
        "operators": [
            {
                "integration-name": "Message Batches",
                "python-modules": [
                    "airflow_batches.operators.submit",
                    "airflow_batches.operators.fetch",
                    "airflow_batches.operators.evaluate",
                ],
            }
        ],
        "extra-links": [
            "airflow_batches.operators._links.EvalReportLink",
            "airflow_batches.operators._links.BatchesLink",
            "airflow_batches.operators._links.SubmitBatchesLink",
            "airflow_batches.operators._links.WaitBatchesLink",
            "airflow_batches.operators._links.FetchBatchesLink",
        ],
        "plugins": [
            {
                "name": "message_batches",
                "plugin-class": "airflow_batches.ui.plugin.MessageBatchesPlugin",
            }
        ],
        "sensors": [
            {
                "integration-name": "Message Batches",
                "python-modules": ["airflow_batches.sensors.batch"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Message Batches",
                "python-modules": ["airflow_batches.triggers.batch"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": _HOOK,
                "hook-name": "Message Batches",
                "connection-type": "message_batches",
                "conn-fields": {
                    "anthropic_version": {
                        "label": "API version",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "2023-06-01",
                            "enum": ["2023-06-01", "2026-10-21"],
                        },
                        "description": "The anthropic-version header sent with every call.",
                    },
                    "betas": {
                        "label": "Betas",
                        "schema": {"type": ["string", "null"]},
                        "description": "Comma-separated anthropic-beta values.",
                    },
                    "workspace_id": {
                        "label": "Workspace id",
                        "schema": {"type": ["string", "null"]},
                        "description": "Sent as anthropic-workspace-id when the key spans several.",
                    },
                    "default_model": {
                        "label": "Default model",
                        "schema": {"type": ["string", "null"]},
                        "description": "Used by requests that name no model.",
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 600},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "schema": {"type": ["integer", "null"], "default": 2},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://api.anthropic.com",
                        "password": "sk-ant-...",
                        "anthropic_version": "2023-06-01",
                        "betas": "output-300k-2026-03-24",
                        "workspace_id": "wrkspc_...",
                        "default_model": "claude-sonnet-4-5",
                        "timeout": "600",
                        "max_retries": "2",
                    },
                },
            }
        ],
    }
