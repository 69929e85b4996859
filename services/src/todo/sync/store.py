"""The sync service keeps no tables: its state (the open connections) lives in each replica's memory.

The schema exists so that every service migrates the same way (``todo-migrate all``).
"""

from todo.common.db import service_metadata

SCHEMA = "sync"
metadata = service_metadata(SCHEMA)
