#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory: the roles and
# the database of the layout. The superuser (POSTGRES_USER) is for this only.
#
# - temporal: owns Temporal's two databases (temporal-schema creates them);
# - booking_app: owns the booking database; what the worker, the API and `booking setup`
#   connect as. Not a superuser.
#
# Passwords travel as psql variables (:'name' quotes them), so any character is safe here.
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v temporal_password="$TEMPORAL_DB_PASSWORD" \
     -v booking_password="$BOOKING_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
CREATE ROLE booking_app LOGIN PASSWORD :'booking_password';
CREATE DATABASE booking OWNER booking_app;
REVOKE ALL ON DATABASE booking FROM PUBLIC;
SQL
