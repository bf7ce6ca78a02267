"""Connecting to Ray: the embedded Ray's start-up retry and its loopback-only address.
(That a real sweep's servers listen on loopback only: test_watchdog.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.ray_connect import connect_ray


@pytest.mark.parametrize(
    ("message", "calls"),
    [("The current node timed out during startup. This could happen ...", 3), ("bad", 1)],
)
def test_embedded_ray_start_retries_only_rays_startup_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, message: str, calls: int
) -> None:
    """Ray's fixed 30 s raylet wait is retried (3 attempts in all, then the error stands); any
    other start-up error is raised at once. ray.init is replaced: nothing starts here."""
    import ray

    seen: list[dict] = []

    def failing_init(**kwargs: object) -> None:
        seen.append(kwargs)
        raise Exception(message)

    monkeypatch.setattr(ray, "init", failing_init)
    # Even with a Ray up in this process (another module's), the start-up path is taken.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(Exception, match=message[:20]):
        connect_ray(None, 1, tmp_path)
    assert len(seen) == calls
    assert all(kw["_node_ip_address"] == "127.0.0.1" for kw in seen)
