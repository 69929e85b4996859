"""The backend's domain operations, one module per concern; routes are thin wrappers around them.

- ``users``: accounts and password hashing;
- ``events``: the task snapshot (its fields are ``TaskResponse``'s), its CloudEvents, and the hook
  that wakes the outbox relay after a commit that queued events;
- ``tasks``: task commands, each under a row lock with its event queued in the same transaction;
- ``listing``: filtered, sorted, keyset-paginated pages.

Three ways to the database, each where it pays: create (the busiest write) is one compiled driver
statement, the other commands use the ORM session, listing uses Core rows on an autocommit
connection (docs/performance.md).
"""

from todo.backend.service.events import SNAPSHOT_FIELDS, snapshot, task_event, wake_on_commit
from todo.backend.service.listing import TaskFilter, list_tasks
from todo.backend.service.tasks import (
    EDITABLE_FIELDS,
    create_next_occurrence,
    create_task,
    delete_task,
    get_task,
    set_completed,
    update_task,
)
from todo.backend.service.users import HashSlot, authenticate, register_user

__all__ = [
    "EDITABLE_FIELDS",
    "SNAPSHOT_FIELDS",
    "HashSlot",
    "TaskFilter",
    "authenticate",
    "create_next_occurrence",
    "create_task",
    "delete_task",
    "get_task",
    "list_tasks",
    "register_user",
    "set_completed",
    "snapshot",
    "task_event",
    "update_task",
    "wake_on_commit",
]
