"""The whole cluster for real: a dkeyserver root and worker and a dkeycache (tests/provisioning's ``cluster``
fixture: tpm2 sealer and tpm2 evidence, each on its own swtpm), plus KMS nodes in cluster mode on one PostgreSQL."""

from __future__ import annotations

from tests.pg import pg_run  # noqa: F401 (fixture)
from tests.provisioning.conftest import cluster, machines  # noqa: F401 (fixtures)
