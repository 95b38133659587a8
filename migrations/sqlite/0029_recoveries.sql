-- Recoveries: an evacuation of lost nodes restores each site from its newest backup on its
-- new node (the restore's id, and what the site lost, on its item), and fences the nodes.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE evacuation_items ADD COLUMN restore_id BLOB REFERENCES restores (id) ON DELETE SET NULL;
ALTER TABLE evacuation_items ADD COLUMN data_loss_seconds INTEGER;
-- A fenced node is told it is, and nothing else: its agent runs nothing, its reports and
-- certificate renewals are refused.
ALTER TABLE nodes ADD COLUMN fenced_at TEXT;
