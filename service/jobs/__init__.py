"""Asynchronous jobs (POST /jobs): a SQLite store, a worker pool that runs the pipeline, and the HTTP routes."""
