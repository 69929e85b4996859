"""Tables of the recurring-task service: only its processed event ids (the tasks live in the backend)."""

from todo.common.consumer import ProcessedEventMixin
from todo.common.db import declarative_base

SCHEMA = "recurring"
Base = declarative_base(SCHEMA)
metadata = Base.metadata


class ProcessedEvent(ProcessedEventMixin, Base):
    __tablename__ = "processed_events"
