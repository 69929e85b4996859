"""Request and response bodies of the Task API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from todo.backend.domain import (
    MAX_TAGS,
    TAG_PATTERN,
    Freq,
    Priority,
    Status,
    check_recurrence_fits,
    normalize_tags,
)
from todo.common.validation import JSON_INTEGER, STORABLE_TEXT_PATTERN, ApiDatetime, storable_text

#: A registrable e-mail address: a local part without spaces, separators, quotes or control
#: characters, and a domain of DNS labels (surrounding whitespace is trimmed). Published as the
#: ``pattern`` of the register body; the API applies exactly it.
EMAIL_PATTERN = (
    r"^[ \t\n\r]*[^@\s,;<>()\[\]\\\"\x00-\x1f\x7f]{1,64}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+[ \t\n\r]*$"
)
_EMAIL = re.compile(EMAIL_PATTERN)
#: A title: at least one character that is not whitespace (it is trimmed), storable text.
TITLE_PATTERN = r"^[^\x00]*[^\s\x00\x1c-\x1f][^\x00]*$"  # \x1c-\x1f: Python's strip() takes them


def _title(value: str) -> str:
    value = storable_text(value).strip()
    if not value:
        raise ValueError("title must contain a non-blank character")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("not a valid e-mail address")
    return value.strip().lower()


def _text(pattern: str = STORABLE_TEXT_PATTERN) -> dict[str, str]:
    """The pattern the document shows for a string (pydantic would check a ``pattern=`` with its own
    regex engine, which lacks Python's; the validators apply the rule)."""
    return {"pattern": pattern}


UtcDatetime = ApiDatetime
Title = Annotated[
    str, Field(min_length=1, max_length=200, json_schema_extra=_text(TITLE_PATTERN)), AfterValidator(_title)
]
Description = Annotated[str, Field(max_length=2000, json_schema_extra=_text()), AfterValidator(storable_text)]
Tag = Annotated[str, Field(max_length=200, json_schema_extra=_text(TAG_PATTERN))]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(normalize_tags)]
RemindBefore = Annotated[
    int, Field(ge=0, le=525_600, description="minutes before due_at; null = no reminder"), JSON_INTEGER
]
Email = Annotated[
    str,
    Field(min_length=3, max_length=254, examples=["ada@example.com"], json_schema_extra=_text(EMAIL_PATTERN)),
    AfterValidator(_email),
]
Password = Annotated[
    str, Field(min_length=8, max_length=128, json_schema_extra=_text()), AfterValidator(storable_text)
]
AnyText = Annotated[str, AfterValidator(storable_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recurrence(Strict):
    freq: Freq
    interval: Annotated[int, Field(ge=1, le=1000), JSON_INTEGER] = 1
    until: UtcDatetime | None = None
    count: Annotated[int, Field(ge=1, le=10_000), JSON_INTEGER] | None = Field(
        None, description="total occurrences in the series"
    )


class RegisterRequest(Strict):
    email: Email
    password: Password


class LoginRequest(Strict):
    email: Annotated[AnyText, Field(min_length=1, max_length=254, json_schema_extra=_text())]
    password: Annotated[AnyText, Field(min_length=1, max_length=128, json_schema_extra=_text())]


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

    # absent = unchanged; never null (the schema says so: a default without a null type)
    title: Title = None  # type: ignore[assignment]
    description: Description | None = None
    priority: Priority = None  # type: ignore[assignment]
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
