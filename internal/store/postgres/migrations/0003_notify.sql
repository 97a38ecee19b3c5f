-- Every committed change to a cached table is announced on the channel
-- keyhold_changes, in the writing transaction (so a notification is sent
-- exactly when the change commits, whoever wrote it: a replica, an owner
-- command). Payload: a JSON array [table, first column, second column].
CREATE FUNCTION keyhold_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r jsonb;
BEGIN
  IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
  PERFORM pg_notify('keyhold_changes', json_build_array(TG_TABLE_NAME, r->>TG_ARGV[0], r->>TG_ARGV[1])::text);
  IF TG_OP = 'UPDATE' AND (to_jsonb(OLD)->>TG_ARGV[1]) IS DISTINCT FROM (r->>TG_ARGV[1]) THEN
    PERFORM pg_notify('keyhold_changes', json_build_array(TG_TABLE_NAME, to_jsonb(OLD)->>TG_ARGV[0], to_jsonb(OLD)->>TG_ARGV[1])::text);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE ON keys FOR EACH ROW EXECUTE FUNCTION keyhold_changed('account_id', 'id');
CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE ON aliases FOR EACH ROW EXECUTE FUNCTION keyhold_changed('account_id', 'name');
CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE ON grants FOR EACH ROW EXECUTE FUNCTION keyhold_changed('account_id', 'key_id');
CREATE TRIGGER custom_key_stores_changed AFTER INSERT OR UPDATE OR DELETE ON custom_key_stores FOR EACH ROW EXECUTE FUNCTION keyhold_changed('account_id', 'id');
CREATE TRIGGER access_keys_changed AFTER INSERT OR UPDATE OR DELETE ON access_keys FOR EACH ROW EXECUTE FUNCTION keyhold_changed('principal_arn', 'id');
CREATE TRIGGER principals_changed AFTER INSERT OR UPDATE OR DELETE ON principals FOR EACH ROW EXECUTE FUNCTION keyhold_changed('account_id', 'arn');
CREATE TRIGGER principal_policies_changed AFTER INSERT OR UPDATE OR DELETE ON principal_policies FOR EACH ROW EXECUTE FUNCTION keyhold_changed('principal_arn', 'name');
