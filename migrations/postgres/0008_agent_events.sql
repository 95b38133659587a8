-- Agents send what they did on their own (drift repaired, a new desired state applied) as
-- numbered events from an outbox; the panel records each number once, in order. The counter
-- starts again when the node's agent enrols again.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE nodes ADD COLUMN agent_event_seq BIGINT NOT NULL DEFAULT 0;
