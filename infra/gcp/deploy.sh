#!/usr/bin/env bash
# Deploy predict and health to Google Cloud Functions (2nd gen) from this checkout.
# Cloud values live here (and only here); override them with environment variables.
#   PROJECT=my-project REGION=europe-west1 MODEL_STORE=gs://my-bucket/segmentation \
#     infra/gcp/deploy.sh
# Needs: gcloud, authenticated, with the Cloud Functions, Cloud Run and Cloud Build APIs on.
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${PROJECT:?set PROJECT to the GCP project id}"
: "${MODEL_STORE:?set MODEL_STORE to the gs:// model store URI}"
REGION="${REGION:-europe-west1}"
RUNTIME="${RUNTIME:-python311}"
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-}"   # needs roles/storage.objectViewer on the store
MEMORY="${MEMORY:-512Mi}"
MAX_INSTANCES="${MAX_INSTANCES:-20}"
CONCURRENCY="${CONCURRENCY:-8}"          # threads share one onnxruntime session
BUILD_DIR="build/deploy/gcp"

python infra/package.py gcp "$BUILD_DIR"

common=(
  --gen2 --project "$PROJECT" --region "$REGION" --runtime "$RUNTIME"
  --source "$BUILD_DIR" --trigger-http --memory "$MEMORY" --cpu 1
  --max-instances "$MAX_INSTANCES" --concurrency "$CONCURRENCY"
  --set-env-vars "SEGMENTATION_MODEL_STORE=${MODEL_STORE},SEGMENTATION_POINTER_POLL_SECONDS=30"
)
[ -n "$SERVICE_ACCOUNT" ] && common+=(--service-account "$SERVICE_ACCOUNT")

# predict scores customers; keep one warm instance so no request pays the cold start.
gcloud functions deploy segmentation-predict --entry-point predict --min-instances 1 "${common[@]}"
# health is readiness for load balancers and uptime checks: cheap, scales to zero.
gcloud functions deploy segmentation-health --entry-point health --min-instances 0 "${common[@]}"
