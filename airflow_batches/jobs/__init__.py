"""A logical job over one or more batches: validation, sharding, manifest, retry ledger.

Nothing in this package imports Airflow.
"""
