"""The forkserver's preload: every botocore session shares one loader holding the parsed
models of the services the handlers call; a custom data path still gets its own loader.

Run in a fresh interpreter: the preload patches botocore for the process that imports it.
"""

from __future__ import annotations

import subprocess
import sys

from tests.repo import REPO_ROOT

CHECK = """
import os, boto3, botocore.session
from loadtest.stage import lambda_preload
loader = lambda_preload.share_parsed_models()
warm = {key[1] for key in loader._cache if key[0] == "load_service_model"}
assert set(lambda_preload.WARM_SERVICES) <= warm, warm
os.environ.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_DEFAULT_REGION="us-east-1")
session = boto3.session.Session()
assert session._session.get_component("data_loader") is loader
client = session.client("dynamodb", endpoint_url="http://127.0.0.1:9")
assert client.meta.service_model.service_name == "dynamodb"
os.environ["AWS_DATA_PATH"] = os.getcwd()
assert botocore.session.Session().get_component("data_loader") is not loader
print("ok")
"""


def test_sessions_share_the_preloaded_models_unless_given_their_own_path() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
