"""Shared fixtures. ``handlers/`` goes on sys.path first, as Lambda's task root does."""

from __future__ import annotations

from loadtest.paths import put_handlers_on_path

put_handlers_on_path()
