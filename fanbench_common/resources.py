"""Where the deployable pieces are: ``template.yaml`` and the ``handlers/`` it deploys
(and, under ``apps/``, the AWS tutorial's own app, which the stage runs as a variant).

In a checkout they sit at the repository's root, where SAM expects them. A wheel
carries the same two under ``fanbench_common/deploy/`` (see pyproject.toml), so
an installed ``fanbench`` runs the same handlers from any working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

CONNECT_FUNCTION = "ConnectFunction"
DISCONNECT_FUNCTION = "DisconnectFunction"
DEFAULT_FUNCTION = "DefaultFunction"
SEND_FUNCTION = "SendMessageFunction"
FANOUT_FUNCTION = "FanoutFunction"
"""The bundled template's function logical IDs (tests/test_template.py holds them to it).
``FANOUT_FUNCTION`` exists only in the ``sharded`` variant."""


@dataclass(frozen=True)
class DeployableApp:
    """A SAM template and the directory its functions' ``CodeUri`` points at."""

    template: Path
    handlers: Path


def checkout_root() -> Path | None:
    """The repository root when fanbench runs from a checkout (not from a wheel)."""
    root = _PACKAGE_DIR.parent
    return root if (root / "template.yaml").is_file() and (root / "handlers").is_dir() else None


def _candidates() -> tuple[Path, ...]:
    return (_PACKAGE_DIR / "deploy", _PACKAGE_DIR.parent)


def bundled_app() -> DeployableApp:
    """fanbench's own template and handlers, from a wheel or from the checkout."""
    for root in _candidates():
        template, handlers = root / "template.yaml", root / "handlers"
        if template.is_file() and (handlers / "sendmessage.py").is_file():
            return DeployableApp(template, handlers)
    searched = ", ".join(str(root) for root in _candidates())
    raise FileNotFoundError(
        f"fanbench's template.yaml and handlers/ are missing (looked in {searched})"
    )


APPS_DIR = _PACKAGE_DIR / "apps"
"""Other apps the stage runs by name, inside this package so a wheel carries them."""


def tutorial_app() -> DeployableApp:
    """The AWS WebSocket chat tutorial's own Node.js app (SDK v3) and its template, unmodified:
    ``--variant tutorial``, a user's actual starting point beside fanbench's handlers."""
    root = APPS_DIR / "tutorial"
    return DeployableApp(root / "template.yaml", root / "src")


def unawaited_app() -> DeployableApp:
    """The tutorial's app with its fan-out left un-awaited: the bug Lambda's freeze exposes."""
    root = APPS_DIR / "unawaited"
    return DeployableApp(root / "template.yaml", root / "src")
