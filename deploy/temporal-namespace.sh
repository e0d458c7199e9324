#!/bin/sh
# One-shot (temporalio/admin-tools): the booking namespace, with an explicit retention (how
# long Temporal keeps a closed booking's history). Creates it once; a later run updates
# the retention to what TEMPORAL_RETENTION says. Compose retries it on failure.
set -eu

NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_RETENTION:-30d}"
ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"

echo "waiting for Temporal at $ADDRESS"
until temporal operator cluster health --address "$ADDRESS" >/dev/null 2>&1; do sleep 2; done

if temporal operator namespace describe --address "$ADDRESS" -n "$NAMESPACE" >/dev/null 2>&1; then
  temporal operator namespace update --address "$ADDRESS" -n "$NAMESPACE" --retention "$RETENTION"
  echo "namespace $NAMESPACE: retention $RETENTION"
else
  temporal operator namespace create --address "$ADDRESS" -n "$NAMESPACE" --retention "$RETENTION"
  echo "namespace $NAMESPACE created, retention $RETENTION"
fi
