-- Page sessions may belong to a member (signed in through the identity provider): the member's
-- role then applies, and the session ends with the member.
-- Keep in step with the other dialect's file of the same name.

ALTER TABLE sessions ADD COLUMN member_id BLOB REFERENCES members (id) ON DELETE CASCADE;
