"""Settings shared by every test."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_jobs_dir(tmp_path_factory):
    """Every app and server a test starts keeps its jobs (SQLite store, spooled uploads) in this run's own
    folder, never in the default /tmp/tzn-jobs-<uid> that a real service or another test run may be using."""
    if "TZN_JOBS_DIR" in os.environ:
        yield
        return
    os.environ["TZN_JOBS_DIR"] = str(tmp_path_factory.mktemp("jobs"))
    yield
    del os.environ["TZN_JOBS_DIR"]
