"""The apps role passes how the notification service protects SMTP, and refuses credentials in clear
(issue 17, item 10): tests/deploy/render_apps.yml (the apps preflight, then the rendered objects)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from deploy_support import render_apps


def render(out: Path, **extra_vars: object) -> subprocess.CompletedProcess[str]:
    return render_apps("kind", out, extra_vars=extra_vars)


def notification_env(out: Path) -> dict[str, str]:
    objects = json.loads((out / "services.json").read_text())
    [deployment] = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "notification"
    ]
    [app] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "notification"]
    return {e["name"]: e.get("value") for e in app["env"]}


def test_the_port_chooses_the_tls_mode_the_notification_pods_get(tmp_path: Path) -> None:
    smtp = {
        "apps_smtp_host": "smtp.example.test",
        "apps_smtp_username": "mailer",
        "apps_smtp_password": "test-smtp-password",
    }
    for port, mode in ((587, "starttls"), (465, "tls")):
        done = render(tmp_path / str(port), **smtp, apps_smtp_port=port)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        env = notification_env(tmp_path / str(port))
        assert env["SMTP_SECURITY"] == mode and env["SMTP_PORT"] == str(port)


def test_credentials_over_plain_text_stop_the_preflight(tmp_path: Path) -> None:
    done = render(
        tmp_path,
        apps_smtp_host="smtp.example.test",
        apps_smtp_port=25,
        apps_smtp_security="none",
        apps_smtp_username="mailer",
        apps_smtp_password="test-smtp-password",
    )
    assert done.returncode != 0
    assert "none (plain text) is allowed only for a relay without apps_smtp_username" in done.stdout
    assert "test-smtp-password" not in done.stdout + done.stderr
