"""The Task API: users, tasks, the outbox of task events."""
