#!/bin/sh
# Runs once, on the primary's first start (the postgres image's
# /docker-entrypoint-initdb.d): the admin console's user and the replica's
# replication user. The application user `app` is the image's superuser
# (POSTGRES_USER) and owns the reference schema applied next (migrations/).
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE admin LOGIN PASSWORD 'admin';
CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'replicator';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
