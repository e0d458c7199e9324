#!/bin/sh
# One-shot (temporalio/admin-tools): Temporal's databases and their schemas, as the official
# samples-server compose layout does it. Safe to run again: an existing database and an
# up-to-date schema are left as they are; compose retries it on failure.
set -eu

# Temporal's server quotes this password into its YAML configuration: a double quote or a
# backslash would break it. Refused here, before the server ever starts.
case "$SQL_PASSWORD" in
  *'"'* | *'\'*)
    echo 'TEMPORAL_DB_PASSWORD must not contain " or \ (the Temporal server quotes it into YAML)' >&2
    exit 64 ;;
esac

# The password comes from SQL_PASSWORD, never the command line.
TOOL="temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u temporal"
SCHEMA=/etc/temporal/schema/postgresql/v12

echo "waiting for postgres:5432"
until nc -z -w 2 postgres 5432; do sleep 1; done

for db in temporal temporal_visibility; do
  $TOOL --db "$db" create 2>/dev/null || echo "database $db exists"
done
$TOOL --db temporal setup-schema -v 0.0 2>/dev/null || echo "temporal schema already set up"
$TOOL --db temporal update-schema -d "$SCHEMA/temporal/versioned"
$TOOL --db temporal_visibility setup-schema -v 0.0 2>/dev/null || echo "visibility schema already set up"
$TOOL --db temporal_visibility update-schema -d "$SCHEMA/visibility/versioned"
echo "Temporal schemas are up to date"
