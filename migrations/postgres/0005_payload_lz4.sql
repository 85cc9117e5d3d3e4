-- The completed event's payload (SPEC §4, about 14 KB for a 5 KB HTML mail) is stored
-- compressed out of line (TOAST). PostgreSQL's default method, pglz, spent about 200 µs of the
-- database's CPU per event on it; lz4 compresses the same JSON about as well in a tenth of the
-- time (docs/benchmarks.md, "The whole pipeline"). It applies to values written from now on;
-- rows written before keep pglz and read as before. A server built without lz4 keeps pglz.
do $$
begin
    if exists (select 1 from pg_settings
               where name = 'default_toast_compression' and 'lz4' = any(enumvals)) then
        alter table events alter column payload set compression lz4;
    end if;
end
$$;
