-- The payload hash of an event as it arrived (canonical JSON of the raw event, before
-- validation). A replayed event whose raw hash matches is a duplicate without being validated
-- again: replays cost a hash and an index lookup per event. NULL for events decided before
-- this column existed (and for raw events with no canonical JSON): those take the full path.
ALTER TABLE worker.event_log ADD COLUMN raw_hash TEXT;
