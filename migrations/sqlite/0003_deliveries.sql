-- Processing and delivery (issue 10). Deliveries are listed and deleted by target; the
-- unique (event_id, target_id) index already serves look-ups by event.
create index deliveries_target on deliveries(target_id);
