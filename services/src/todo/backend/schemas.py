"""Request and response bodies of the Task API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from todo.backend.domain import Freq, Priority, Status, check_recurrence_fits, normalize_tags
from todo.common.validation import storable_text, utc_datetime

_EMAIL = re.compile(
    r"^[^@\s,;<>()\[\]\\\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _title(value: str) -> str:
    value = storable_text(value).strip()
    if not value:
        raise ValueError("title must contain a non-blank character")
    return value


def _email(value: str) -> str:
    value = storable_text(value).strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("not a valid e-mail address")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(utc_datetime)]
Title = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_title)]
Description = Annotated[str, Field(max_length=2000), AfterValidator(storable_text)]
Tags = Annotated[
    list[Annotated[str, Field(max_length=200)]], Field(max_length=50), AfterValidator(normalize_tags)
]
RemindBefore = Annotated[
    int, Field(ge=0, le=525_600, description="minutes before due_at; null = no reminder")
]
Email = Annotated[
    str, Field(min_length=3, max_length=254, examples=["ada@example.com"]), AfterValidator(_email)
]
Password = Annotated[str, Field(min_length=8, max_length=128), AfterValidator(storable_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recurrence(Strict):
    freq: Freq
    interval: int = Field(1, ge=1, le=1000)
    until: UtcDatetime | None = None
    count: int | None = Field(None, ge=1, le=10_000, description="total occurrences in the series")


class RegisterRequest(Strict):
    email: Email
    password: Password


class LoginRequest(Strict):
    email: Annotated[str, Field(min_length=1, max_length=254), AfterValidator(storable_text)]
    password: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(storable_text)]


class UserResponse(BaseModel):
    id: uuid.UUID
    email: str
    created_at: datetime


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user_id: uuid.UUID


class TaskCreate(Strict):
    title: Title
    description: Description | None = None
    priority: Priority = Priority.medium
    tags: Tags = Field(default_factory=list)
    due_at: UtcDatetime | None = None
    remind_before_minutes: RemindBefore | None = 15
    recurrence: Recurrence | None = None

    @model_validator(mode="after")
    def _series_fits_the_calendar(self) -> TaskCreate:
        recurrence = self.recurrence.model_dump(mode="json") if self.recurrence else None
        check_recurrence_fits(self.due_at, recurrence)
        return self


class TaskUpdate(Strict):
    """Partial update: absent fields stay as they are; ``null`` clears a field that may be empty."""

    title: Title | None = None
    description: Description | None = None
    priority: Priority | None = None
    tags: Tags | None = None
    due_at: UtcDatetime | None = None
    remind_before_minutes: RemindBefore | None = None
    recurrence: Recurrence | None = None

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> TaskUpdate:
        for name in ("title", "priority"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be cleared (null)")
        if self.recurrence is not None:  # with the stored due date, checked when the update applies
            check_recurrence_fits(self.due_at, self.recurrence.model_dump(mode="json"))
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, with JSON-ready values (tags null -> [])."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "tags" and value is None:
                value = []
            elif name == "recurrence" and value is not None:
                value = value.model_dump(mode="json")
            elif isinstance(value, Priority):
                value = value.value
            out[name] = value
        return out


class TaskResponse(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    description: str | None
    status: Status
    priority: Priority
    tags: list[str]
    due_at: datetime | None
    remind_before_minutes: int | None
    recurrence: Recurrence | None
    completed_at: datetime | None
    version: int
    series_id: uuid.UUID
    occurrence: int
    previous_occurrence_id: uuid.UUID | None
    series_anchor_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TaskPage(BaseModel):
    items: list[TaskResponse]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class NextOccurrenceRequest(Strict):
    due_at: UtcDatetime | None = None
    series_anchor_at: UtcDatetime | None = Field(
        None, description="anchor of the series; used only when the series has none yet"
    )
