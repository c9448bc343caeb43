output "predict_url" {
  description = "predict: POST / scores customers, GET /model describes the model, GET /health is the instance's readiness."
  value       = google_cloudfunctions2_function.predict.url
}

output "health_url" {
  description = "health: 200 when the store's current model verifies, else 503."
  value       = google_cloudfunctions2_function.health.url
}

output "retrain_url" {
  description = "retrain's internal URL (Eventarc delivers the schedule's messages to it)."
  value       = google_cloudfunctions2_function.retrain.url
}

output "model_bucket" {
  description = "The model bucket."
  value       = google_storage_bucket.models.name
}

output "model_store" {
  description = "SEGMENTATION_MODEL_STORE for the CLI: publish, promote and rollback against the deployed store."
  value       = local.model_store
}

output "retrain_topic" {
  description = "Pub/Sub topic that starts a retrain run."
  value       = google_pubsub_topic.retrain.id
}

output "service_accounts" {
  description = "The service account of each role."
  value = {
    serving         = google_service_account.serving.email
    retrain         = google_service_account.retrain.email
    retrain_trigger = google_service_account.retrain_trigger.email
  }
}
