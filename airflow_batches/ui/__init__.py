"""The Message Batches page in the Airflow UI: the provider's own Airflow plugin.

``plugin.MessageBatchesPlugin`` is registered through the ``airflow.plugins`` entry point
(installing the package is enough). It mounts a FastAPI app in the api-server at
``/message-batches`` (the jobs in flight, the evaluations over time, one run's jobs, the
evaluations' reports; behind Airflow's own authentication and DAG access) and adds the page to
the UI's navigation. See docs/ui.md.

Importing this package loads nothing: the app is built on its first request, in the
api-server only (every Airflow process loads plugins; the scheduler and the workers never
serve the page).
"""
