#!/bin/sh
# One logical backup of the Todo database: every service schema in one pg_dump snapshot, so the
# backend's outbox and each consumer's processed ids are from the same instant (the restore's
# reconciliation relies on it). Run by the backup CronJob, the on-demand backup runbook and the tests.
#   DATABASE_URL  postgresql://user:password@host:port/db (or DATABASE_URL_FILE: a file holding it)
#   BACKUP_DIR    where the dumps go;  BACKUP_KEEP  how many dumps to keep (newest first)
set -eu
if [ -z "${DATABASE_URL:-}" ] && [ -n "${DATABASE_URL_FILE:-}" ]; then DATABASE_URL=$(cat "$DATABASE_URL_FILE"); fi
: "${DATABASE_URL:?set DATABASE_URL or DATABASE_URL_FILE}"
: "${BACKUP_DIR:?set BACKUP_DIR}"
keep=${BACKUP_KEEP:-7}
case $keep in '' | *[!0-9]* | 0) echo "BACKUP_KEEP must be a whole number of at least 1, not '$keep'" >&2; exit 2 ;; esac
mkdir -p "$BACKUP_DIR"
name="todo-$(date -u +%Y%m%dT%H%M%SZ).dump"
# written under a temporary name: a dump cut short never looks like a backup
pg_dump --format=custom --no-owner --no-privileges --file="$BACKUP_DIR/$name.partial" --dbname="$DATABASE_URL"
pg_restore --list "$BACKUP_DIR/$name.partial" > /dev/null
mv "$BACKUP_DIR/$name.partial" "$BACKUP_DIR/$name"
echo "backup written: $name ($(wc -c < "$BACKUP_DIR/$name") bytes)"
# retention: the newest $keep dumps stay (names sort by time)
ls -1 "$BACKUP_DIR" | grep -E '^todo-[0-9]{8}T[0-9]{6}Z\.dump$' | sort -r | tail -n +"$((keep + 1))" | while read -r old; do
  rm -f "$BACKUP_DIR/$old"
  echo "backup removed (retention $keep): $old"
done
