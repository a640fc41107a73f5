"""Lean Prefect client settings for processes that run settlement flows (ARCHITECTURE.md §4).

Measured here: a flow run costs about 1.1 s with default settings and about 80 ms with
these. The flow heartbeat alone adds ~1 s to every run; it cannot be switched off through
the environment (None fails validation) and ``temporary_settings()`` is thread-local, so
:func:`install` replaces the process-global settings context once, as Prefect's own test
harness does. The cost is Prefect's zombie detection, which Ridgeline does not rely on:
the durable state of a settlement is its row in the region database.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx

#: A dead API must fail a flow call within a settlement pass, not after minutes of retries.
CLIENT_RETRIES_MAX = 1


def client_environment(api_url: str, auth_string: str | None = None) -> dict[str, str]:
    """Environment for a process whose flows report to the Prefect API at ``api_url``
    (``auth_string``: the API's ``user:password``, when it asks for one)."""
    return {
        "PREFECT_API_URL": api_url,
        **({"PREFECT_API_AUTH_STRING": auth_string} if auth_string else {}),
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLIENT_MAX_RETRIES": str(CLIENT_RETRIES_MAX),
        # Every new client parses its CA file (~16 ms CPU for the whole bundle): one root will do
        # for a loopback http:// API.
        "PREFECT_API_SSL_CERT_FILE": str(small_ca_file()),
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    }


def api_client(timeout_seconds: float = 10.0) -> httpx.Client:
    """An HTTP client for the Prefect API this process reports to, with its credentials:
    for the few reads (flow-run counts, artifacts) that Prefect's own client does not need."""
    auth_string = os.environ.get("PREFECT_API_AUTH_STRING")
    user, _, password = (auth_string or "").partition(":")
    return httpx.Client(base_url=os.environ["PREFECT_API_URL"], auth=(user, password) if auth_string else None, timeout=timeout_seconds)


def small_ca_file() -> Path:
    """A PEM with the first certificate of certifi's bundle, written once per machine."""
    import certifi

    path = Path(tempfile.gettempdir()) / "ridgeline-prefect-ca.pem"
    if not path.exists():
        bundle = Path(certifi.where()).read_text()
        end = "-----END CERTIFICATE-----"
        first = bundle[bundle.index("-----BEGIN CERTIFICATE-----") : bundle.index(end) + len(end)]
        partial = path.with_suffix(f".{os.getpid()}")
        partial.write_text(first + "\n")
        partial.replace(path)
    return path


def install(api_url: str | None = None, auth_string: str | None = None) -> None:
    """Applies the lean settings to this process: environment first, then no flow heartbeat.

    Call once at process start, before the first flow run. ``api_url`` None keeps
    ``PREFECT_API_URL`` from the environment (it must be set: there is no offline mode);
    ``auth_string`` None keeps ``PREFECT_API_AUTH_STRING`` from it.
    """
    url = api_url or os.environ.get("PREFECT_API_URL")
    if not url:
        raise RuntimeError("PREFECT_API_URL is not set: settlement needs a Prefect server (ridgeline prefect-server)")
    for name, value in client_environment(url, auth_string).items():
        if name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING") or name not in os.environ:
            os.environ[name] = value
    import prefect.context
    from prefect.settings import Settings

    settings = Settings()
    lean = settings.model_copy(update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})})
    current = prefect.context.root_settings_context()
    prefect.context.GLOBAL_SETTINGS_CONTEXT = prefect.context.SettingsContext(profile=current.profile, settings=lean)
