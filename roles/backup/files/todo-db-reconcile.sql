-- After a restore, before any service starts: make the outboxes agree with the consumers'
-- processed ids (docs/runbooks.md, "Backup and restore"). The dump is one snapshot, so both come
-- from the same instant; they can still disagree in two ways:
--  * an event the relay published but had not yet marked sent (the mark is a second statement)
--    that every consumer has already applied: marked sent, so it is not published again;
--  * an event marked sent that a consumer had not applied yet at the snapshot (its lag): the
--    consumer's effect is not in the restored database and Kafka will not deliver the event again
--    (its offset is past it), so it goes back to the outbox; the consumers that applied it see a
--    duplicate and change nothing.
-- The consumers that record task events, per event type (the subscriptions of the audit,
-- notification and recurring-task services; sync keeps no state): every consumer must have
-- applied an event before it counts as delivered.
BEGIN;

CREATE TEMP TABLE _restore_task_events ON COMMIT DROP AS
SELECT o.seq,
       o.sent_at IS NOT NULL AS marked_sent,
       EXISTS (SELECT 1 FROM audit.processed_events p WHERE p.event_id = o.event_id::text)
       AND EXISTS (SELECT 1 FROM notification.processed_events p WHERE p.event_id = o.event_id::text)
       AND (o.event_type <> 'com.todo.task.completed'
            OR EXISTS (SELECT 1 FROM recurring.processed_events p WHERE p.event_id = o.event_id::text))
         AS applied_everywhere
FROM backend.outbox o;

UPDATE backend.outbox o SET sent_at = now(), last_error = NULL
FROM _restore_task_events r
WHERE r.seq = o.seq AND r.applied_everywhere AND NOT r.marked_sent;

UPDATE backend.outbox o SET sent_at = NULL, attempts = 0, last_error = NULL
FROM _restore_task_events r
WHERE r.seq = o.seq AND NOT r.applied_everywhere AND r.marked_sent;

SELECT count(*) FILTER (WHERE applied_everywhere AND NOT marked_sent) AS marked_sent_now,
       count(*) FILTER (WHERE NOT applied_everywhere AND marked_sent) AS to_publish_again,
       count(*) FILTER (WHERE NOT applied_everywhere AND NOT marked_sent) AS still_pending
FROM _restore_task_events;

COMMIT;
