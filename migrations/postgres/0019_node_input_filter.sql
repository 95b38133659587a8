-- A node's opt-in input filter: its own services (SSH, the agent's ports) answer only the
-- networks listed here (JSON array of prefixes) and the co-op's other nodes.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE nodes ADD COLUMN input_filter BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE nodes ADD COLUMN input_allowed JSONB NOT NULL DEFAULT '[]';
