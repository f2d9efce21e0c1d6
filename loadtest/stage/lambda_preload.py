"""What the Lambda environments' forkserver loads once, so that each environment need not.

Imported only by the forkserver (``lambda_runtime.forkserver_context``), before it
forks any environment. Besides boto3 and botocore themselves (``lambda_worker.PRELOAD``),
it parses the botocore models the bundled handlers' clients need (DynamoDB,
@connections, Lambda): every botocore session in an environment then shares that one
loader, as every client of one process already does. A cold start still runs the
handler module and builds its own clients and sessions; what it no longer does is
decompress and parse the same JSON models on a laptop core for every environment
(about 85 ms of CPU each, a third of a swarm's Lambda CPU). Models of other services
load on first use, as before, into the shared loader.
"""

from __future__ import annotations

import botocore.loaders
import botocore.session

WARM_SERVICES = ("dynamodb", "apigatewaymanagementapi", "lambda")
"""The services the bundled handlers call (a user's own handlers may call others)."""


def share_parsed_models() -> botocore.loaders.Loader:
    """Parse ``WARM_SERVICES``' models into one loader, and make it every session's default."""
    loader = botocore.loaders.create_loader()
    session = botocore.session.Session()
    session.register_component("data_loader", loader)
    for service in WARM_SERVICES:
        # Region and keys given, so that building the client reads no credentials or config.
        session.create_client(
            service, region_name="us-east-1", aws_access_key_id="preload",
            aws_secret_access_key="preload",
        )  # fmt: skip
    default_loader = botocore.session.create_loader

    def create_loader(search_path: str | None = None) -> botocore.loaders.Loader:
        # AWS_DATA_PATH names other models: those get a loader of their own, as without this.
        return loader if search_path is None else default_loader(search_path)

    botocore.session.create_loader = create_loader  # type: ignore[assignment]
    return loader


share_parsed_models()
