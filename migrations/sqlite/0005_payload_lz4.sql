-- Keep in step with the other engine's 0005, which sets PostgreSQL's compression of the
-- payload column to lz4. SQLite does not compress values: nothing to change.
select 1;
