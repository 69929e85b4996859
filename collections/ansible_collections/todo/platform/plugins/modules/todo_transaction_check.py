#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: todo_transaction_check
short_description: Run one real transaction through the Todo platform and wait for its audit row
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Registers an account on the backend, logs in, creates a task and polls the audit service
    until the task's C(com.todo.task.created) event is in the account's audit trail. This is the
    whole event pipeline a user relies on (backend, outbox relay, Dapr pub/sub, Kafka, the audit
    consumer and its sidecar), so a deployment whose pods are Ready but whose pipeline is broken
    fails here.
  - A failure names the hop that failed in RV(failed_hop) (V(register), V(login), V(create) or
    V(audit)) and says in RV(msg) what answered and what to check.
  - Talks plain HTTP(S) to two base URLs; how they are reached (port-forward, gateway, ingress)
    is the caller's choice. The project's C(apps) role (C(roles/apps)) forwards local ports to the
    Services with C(kubectl port-forward) and calls this module at the end of its verify phase.
  - Each run leaves one account behind (a new C(deploy-check-<random>@<email_domain>) unless
    O(email) is given); the task it creates is deleted again unless O(delete_task=false).
attributes:
  check_mode:
    support: partial
    description: In check mode nothing is written; the module only asks both services'
      C(/readyz) and fails when one is not ready.
    details: No account, task or event is made in check mode, so the pipeline itself is not
      checked; only the two services' readiness is.
  diff_mode:
    support: none
    description: Nothing of the deployment is changed, so there is nothing to compare.
options:
  backend_url:
    description:
      - Base URL of the backend (the REST API with C(/api/auth) and C(/api/tasks)), for example
        V(http://127.0.0.1:8000).
    type: str
    required: true
  audit_url:
    description:
      - Base URL of the audit service (C(GET /api/audit)). With one hostname routing by path
        (gateway, ingress), the same as O(backend_url).
    type: str
    required: true
  email:
    description:
      - Account to use. It is registered when it does not exist yet, else logged in to with
        O(password). Empty (the default) registers a new account on each run.
    type: str
    default: ""
  password:
    description:
      - Password of O(email) (8 to 128 characters); required with O(email), never logged.
        Without O(email) a random one is generated and not returned.
    type: str
    default: ""
  email_domain:
    description:
      - Domain of the generated account's address.
    type: str
    default: example.invalid
  audit_timeout:
    description:
      - Seconds to wait for the event to reach the audit log after the task was created.
    type: int
    default: 60
  request_timeout:
    description:
      - Seconds one HTTP request may take.
    type: int
    default: 10
  delete_task:
    description:
      - Delete the task again once its audit row was seen (its C(task.deleted) event is not
        waited for).
    type: bool
    default: true
  validate_certs:
    description:
      - Verify the services' TLS certificates for C(https://) URLs.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle (PEM file) to verify C(https://) URLs against, instead of the system's.
    type: path
  use_proxy:
    description:
      - Use the proxy of the environment (C(https_proxy), C(no_proxy)). Set V(false) for
        port-forwarded loopback URLs, which a proxy cannot reach.
    type: bool
    default: true
notes:
  - Reports C(changed=false), like M(ansible.builtin.uri). The account and task it writes are
    test data, not state of the deployment, so a playbook ending with this check stays idempotent.
seealso:
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Check one transaction through port-forwarded Services
  todo.platform.todo_transaction_check:
    backend_url: http://127.0.0.1:18080
    audit_url: http://127.0.0.1:18081
    audit_timeout: 120

- name: Check through the public hostname with a fixed account
  todo.platform.todo_transaction_check:
    backend_url: https://todo.example.com
    audit_url: https://todo.example.com
    email: deploy-check@example.com
    password: "{{ vault_deploy_check_password }}"
  register: transaction

- name: Show how long the event took
  ansible.builtin.debug:
    msg: "audit row after {{ transaction.audit_seconds }} s"
"""

RETURN = r"""
msg:
  description: One line saying what passed, or which hop failed, what answered and what to check.
  returned: always
  type: str
failed_hop:
  description: The hop that failed (V(register), V(login), V(create), V(audit)); empty on success
    and in check mode.
  returned: always
  type: str
  sample: audit
email:
  description: The account used.
  returned: when not in check mode
  type: str
  sample: deploy-check-3f2a9c0d1e4b@example.invalid
user_id:
  description: Id of the account.
  returned: after a successful login
  type: str
task_id:
  description: Id of the task created.
  returned: after the task was created
  type: str
audit_seconds:
  description: Seconds from the task's creation until its audit row was seen.
  returned: success
  type: float
  sample: 0.8
task_deleted:
  description: Whether the task was deleted again.
  returned: success
  type: bool
ready:
  description: The C(/readyz) answer of each service (check mode).
  returned: check mode
  type: dict
  sample: {backend: true, audit: true}
"""

import json
import secrets
import time
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url

CREATED_TYPE = "com.todo.task.created"
POLL_SECONDS = 0.5


class HopFailed(Exception):
    def __init__(self, hop, message):
        super().__init__(message)
        self.hop = hop
        self.message = message


class Unreachable(Exception):
    """No HTTP answer at all (refused, reset, timeout, TLS)."""


class Client:
    def __init__(self, p):
        self.timeout = p["request_timeout"]
        self.validate_certs = p["validate_certs"]
        self.ca_path = p["ca_path"]
        self.use_proxy = p["use_proxy"]

    def call(self, method, url, body=None, token=None):
        """(status, parsed JSON body or text) of one request; HTTP errors are answers, not raised."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = "Bearer " + token
        try:
            resp = open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                use_proxy=self.use_proxy,
                follow_redirects="safe",
            )
            status, raw = resp.getcode(), resp.read()
        except HTTPError as e:
            status, raw = e.code, e.read() if e.fp is not None else b""
        except (URLError, OSError, UrlConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise Unreachable(f"{method} {url}: no answer ({reason})") from None
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text


def describe(method, url, status, body):
    """One line for an unexpected answer: the problem+json detail when there is one."""
    detail = body
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or json.dumps(body)[:300]
    detail = " ".join(str(detail or "").split())[:300]
    return "{} {} answered HTTP {}{}".format(method, url, status, ": " + detail if detail else "")


def sign_in(client, backend, p):
    email, password = p["email"], p["password"]
    if not email:
        email = "deploy-check-{}@{}".format(secrets.token_hex(6), p["email_domain"])
        password = secrets.token_urlsafe(24)
    url = backend + "/api/auth/register"
    try:
        status, body = client.call("POST", url, {"email": email, "password": password})
    except Unreachable as e:
        raise HopFailed("register", f"register: the backend is unreachable: {e}") from None
    # 409: the given account exists already; logging in proves its password.
    if status not in (201, 409) or (status == 409 and not p["email"]):
        raise HopFailed("register", "register: " + describe("POST", url, status, body))
    url = backend + "/api/auth/login"
    try:
        status, body = client.call("POST", url, {"email": email, "password": password})
    except Unreachable as e:
        raise HopFailed("login", f"login: the backend is unreachable: {e}") from None
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        raise HopFailed("login", "login: " + describe("POST", url, status, body))
    return email, body["access_token"], str(body.get("user_id", ""))


def create_task(client, backend, token):
    url = backend + "/api/tasks"
    title = "deploy check {}".format(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        status, body = client.call("POST", url, {"title": title, "remind_before_minutes": None}, token)
    except Unreachable as e:
        raise HopFailed("create", f"create: the backend is unreachable: {e}") from None
    if status != 201 or not isinstance(body, dict) or "id" not in body:
        raise HopFailed("create", "create: " + describe("POST", url, status, body))
    return body["id"]


def wait_for_audit(client, audit, token, task_id, timeout):
    """Seconds until the task's created event is in the audit trail; HopFailed after ``timeout``."""
    url = f"{audit}/api/audit?task_id={quote(task_id)}&type={quote(CREATED_TYPE)}"
    start = time.monotonic()
    last = "no answer yet"
    while True:
        try:
            status, body = client.call("GET", url, token=token)
            if status == 200 and isinstance(body, dict):
                if any(i.get("task_id") == task_id for i in body.get("items", [])):
                    return round(time.monotonic() - start, 2)
                last = "HTTP 200, no row for the task yet"
            elif 400 <= status < 500:
                # The audit service refuses the request: waiting longer cannot help.
                raise HopFailed("audit", "audit: " + describe("GET", url, status, body) + hint_for(status))
            else:
                last = describe("GET", url, status, body)
        except Unreachable as e:
            last = str(e)
        if time.monotonic() - start >= timeout:
            raise HopFailed(
                "audit",
                f"audit: the task.created event of task {task_id} did not reach the audit log within "
                f"{timeout} s (the backend accepted the task; last audit answer: {last}). Check the "
                "backend's outbox relay and daprd, the pub/sub component and Kafka, and the audit "
                "service's daprd and its logs (a 401 on its /events route means the sidecar's "
                "APP_API_TOKEN is not the app's)",
            )
        time.sleep(POLL_SECONDS)


def hint_for(status):
    if status == 401:
        return " (the audit service does not accept the backend's token: both must share JWT_SECRET)"
    return ""


def delete_task(client, backend, token, task_id):
    url = f"{backend}/api/tasks/{quote(task_id)}"
    try:
        status = client.call("DELETE", url, token=token)[0]
    except Unreachable:
        return False
    return status == 204


def readiness(client, urls):
    ready = {}
    for name, base in urls.items():
        try:
            status = client.call("GET", base + "/readyz")[0]
            ready[name] = status == 200
        except Unreachable:
            ready[name] = False
    return ready


def base_url(module, name):
    value = module.params[name].strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        module.fail_json(
            msg=f"{name} must be an http:// or https:// base URL such as http://127.0.0.1:8000 "
            f"(got {module.params[name]!r})",
            failed_hop="",
        )
    return value


ARGUMENT_SPEC = dict(
    backend_url=dict(type="str", required=True),
    audit_url=dict(type="str", required=True),
    email=dict(type="str", default=""),
    password=dict(type="str", default="", no_log=True),
    email_domain=dict(type="str", default="example.invalid"),
    audit_timeout=dict(type="int", default=60),
    request_timeout=dict(type="int", default=10),
    delete_task=dict(type="bool", default=True),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    use_proxy=dict(type="bool", default=True),
)


def checked_urls(module):
    """The two base URLs, after refusing settings that cannot work."""
    p = module.params
    backend, audit = base_url(module, "backend_url"), base_url(module, "audit_url")
    if p["audit_timeout"] < 1 or p["request_timeout"] < 1:
        module.fail_json(msg="audit_timeout and request_timeout must be at least 1 second", failed_hop="")
    if p["email"] and not 8 <= len(p["password"]) <= 128:
        module.fail_json(
            msg="email is set: give its password (8 to 128 characters) in password", failed_hop=""
        )
    return backend, audit


def exit_check_mode(module, client, backend, audit):
    """Check mode makes no transaction: it only reports whether both services are ready."""
    ready = readiness(client, {"backend": backend, "audit": audit})
    not_ready = sorted(k for k, v in ready.items() if not v)
    if not_ready:
        module.fail_json(msg="not ready (GET /readyz): " + ", ".join(not_ready), ready=ready, failed_hop="")
    module.exit_json(
        changed=False,
        ready=ready,
        failed_hop="",
        msg="check mode: both services are ready; no transaction was made",
    )


def run_transaction(module, client, backend, audit):
    """Register (or sign in), create a task, wait for its audit row, delete it; the hop that broke
    is in failed_hop."""
    p = module.params
    result = dict(changed=False, failed_hop="")
    try:
        email, token, user_id = sign_in(client, backend, p)
        result.update(email=email, user_id=user_id)
        task_id = create_task(client, backend, token)
        result["task_id"] = task_id
        result["audit_seconds"] = wait_for_audit(client, audit, token, task_id, p["audit_timeout"])
        result["task_deleted"] = delete_task(client, backend, token, task_id) if p["delete_task"] else False
    except HopFailed as e:
        result.update(failed_hop=e.hop, msg=e.message)
        module.fail_json(**result)
    except Exception as e:  # never a traceback: one line saying what broke
        result.update(
            msg="todo_transaction_check failed unexpectedly: {}: {}".format(
                type(e).__name__, " ".join(str(e).split())
            )
        )
        module.fail_json(**result)
    result["msg"] = "registered, created task {} and saw it in the audit log after {} s".format(
        result["task_id"], result["audit_seconds"]
    )
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    backend, audit = checked_urls(module)
    client = Client(module.params)
    if module.check_mode:
        exit_check_mode(module, client, backend, audit)
    run_transaction(module, client, backend, audit)


if __name__ == "__main__":
    main()
