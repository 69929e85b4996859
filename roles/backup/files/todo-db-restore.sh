#!/bin/sh
# Restore a dump written by todo-db-backup.sh, then make the outbox agree with the consumers'
# processed ids (todo-db-reconcile.sql). Run only while every service is scaled to zero (the
# restore runbook does that): a relay or consumer running meanwhile would publish or apply against
# a half-restored database.
#   DATABASE_URL (or DATABASE_URL_FILE), BACKUP_DIR, BACKUP_FILE (a name in BACKUP_DIR, or "latest")
#   RECONCILE_SQL  path of todo-db-reconcile.sql (default: beside this script)
set -eu
if [ -z "${DATABASE_URL:-}" ] && [ -n "${DATABASE_URL_FILE:-}" ]; then DATABASE_URL=$(cat "$DATABASE_URL_FILE"); fi
: "${DATABASE_URL:?set DATABASE_URL or DATABASE_URL_FILE}"
: "${BACKUP_DIR:?set BACKUP_DIR}"
file=${BACKUP_FILE:-latest}
if [ "$file" = latest ]; then
  file=$(ls -1 "$BACKUP_DIR" | grep -E '^todo-[0-9]{8}T[0-9]{6}Z\.dump$' | sort -r | head -n 1 || true)
  [ -n "$file" ] || { echo "no backup in $BACKUP_DIR" >&2; exit 2; }
fi
case $file in */* | .*) echo "BACKUP_FILE is a file name in $BACKUP_DIR, not a path: $file" >&2; exit 2 ;; esac
[ -f "$BACKUP_DIR/$file" ] || { echo "no backup named $file in $BACKUP_DIR (ls it, or use latest)" >&2; exit 2; }
echo "restoring $file"
# schemas dropped and recreated from the dump, all or nothing
pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction --exit-on-error \
  --dbname="$DATABASE_URL" "$BACKUP_DIR/$file"
psql --no-psqlrc --set=ON_ERROR_STOP=1 --quiet --dbname="$DATABASE_URL" \
  --file="${RECONCILE_SQL:-$(dirname "$0")/todo-db-reconcile.sql}"
echo "restored $file"
