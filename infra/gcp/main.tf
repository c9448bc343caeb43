# Customer segmentation on Google Cloud: predict and health (HTTP, onnxruntime + numpy),
# retrain (CloudEvent, the training stack) as Cloud Functions 2nd gen; the model bucket;
# Cloud Scheduler -> Pub/Sub -> retrain. Cloud values are set here and nowhere else.
#
# Build the three deployables first (`terraform plan` zips these folders):
#   python infra/package.py gcp predict
#   python infra/package.py gcp health
#   python infra/package.py gcp retrain
#
# Probes: google_cloudfunctions2_function has no startup or readiness probe field (the
# underlying Cloud Run service's default TCP startup probe is all a function gets). The
# instance readiness route is predict's own `GET /health`; the container image
# (Dockerfile at the top of the repository) uses it as its HEALTHCHECK, and an uptime
# check or load balancer can call it. The separate health function answers whether the
# store's current model verifies (model availability), not whether one instance is up.

locals {
  model_bucket = coalesce(var.model_bucket, "${var.project}-${var.name_prefix}-models")
  model_store  = "gs://${local.model_bucket}/${var.model_store_prefix}"
  runtime      = "python312"

  # One folder per function, as `python infra/package.py gcp <function>` writes it.
  package_dirs = {
    predict = "${path.module}/../../build/deploy/gcp/predict"
    health  = "${path.module}/../../build/deploy/gcp/health"
    retrain = "${path.module}/../../build/deploy/gcp/retrain"
  }

  # Names are those segmentation.config.Settings reads; every other setting keeps its
  # default (see the README's configuration table).
  serving_env = {
    SEGMENTATION_MODEL_STORE          = local.model_store
    SEGMENTATION_POINTER_POLL_SECONDS = tostring(var.pointer_poll_seconds)
  }
  retrain_env = {
    SEGMENTATION_MODEL_STORE = local.model_store
    SEGMENTATION_DATA        = "gs://${local.model_bucket}/${var.data_object}"
    # Local defaults (var/...) go to the instance's in-memory /tmp, not the source folder.
    SEGMENTATION_HOME = "/tmp"
    # A run may take the whole timeout; a lease outliving it by a minute is taken over
    # only once the killed run is certainly gone.
    SEGMENTATION_RETRAIN_LEASE_SECONDS = tostring(var.retrain.timeout + 60)
  }

  # The model store prefix, as IAM conditions see it: objects under it, and object
  # listings whose prefix is inside it (a listing is checked against the bucket).
  model_prefix_condition = join(" || ", [
    "resource.name.startsWith(\"projects/_/buckets/${local.model_bucket}/objects/${var.model_store_prefix}/\")",
    "api.getAttribute(\"storage.googleapis.com/objectListPrefix\", \"\").startsWith(\"${var.model_store_prefix}/\")",
  ])

  labels = { app = var.name_prefix }
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])
  project = var.project
  service = each.value
  # Other workloads of the project may use these APIs: destroying this stack leaves them on.
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------

# The model store: versions/<id>/..., current.json (the compare-and-swap pointer), the
# run ledger, drift records. Versioning keeps every replaced pointer generation.
resource "google_storage_bucket" "models" {
  #checkov:skip=CKV_GCP_62: access logs would be a second bucket of logs per request; Cloud Audit Logs (Data Access) cover object reads and writes when enabled on the project
  name                        = local.model_bucket
  project                     = var.project
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

# The functions' source archives, uploaded by Terraform and read by Cloud Build.
resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62: build inputs only, written by this Terraform; Cloud Audit Logs cover them
  name                        = "${var.project}-${var.name_prefix}-sources"
  project                     = var.project
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

data "archive_file" "source" {
  for_each    = local.package_dirs
  type        = "zip"
  source_dir  = each.value
  output_path = "${each.value}.zip"
}

resource "google_storage_bucket_object" "source" {
  for_each = local.package_dirs
  # The content hash in the name: a changed package is a new object, which redeploys.
  name   = "${each.key}-${data.archive_file.source[each.key].output_md5}.zip"
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.source[each.key].output_path
}

# ---------------------------------------------------------------------------------------
# Service accounts, one per role
# ---------------------------------------------------------------------------------------

resource "google_service_account" "serving" {
  project      = var.project
  account_id   = "${var.name_prefix}-serving"
  display_name = "Segmentation predict and health: reads the model store"
}

resource "google_service_account" "retrain" {
  project      = var.project
  account_id   = "${var.name_prefix}-retrain"
  display_name = "Segmentation retrain: reads the raw file, writes the model store"
}

resource "google_service_account" "retrain_trigger" {
  project      = var.project
  account_id   = "${var.name_prefix}-trigger"
  display_name = "Segmentation retrain trigger: Eventarc delivers Pub/Sub messages as it"
}

# Serving reads the model store prefix and nothing else.
resource "google_storage_bucket_iam_member" "serving_reads_models" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.serving.member

  condition {
    title       = "model-store-prefix"
    description = "Objects and listings under the model store prefix only"
    expression  = local.model_prefix_condition
  }
}

# Retrain creates versions and replaces the pointer, the lease and its claims with
# generation preconditions. Replacing a live object is authorised as
# storage.objects.delete, which objectCreator (+ objectViewer) lacks: the pointer could
# never move. objectUser grants create/get/list/update/delete on objects and none of
# objectAdmin's IAM-policy permissions; versioning keeps each replaced generation.
resource "google_storage_bucket_iam_member" "retrain_writes_models" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectUser"
  member = google_service_account.retrain.member

  condition {
    title       = "model-store-prefix"
    description = "Objects and listings under the model store prefix only"
    expression  = local.model_prefix_condition
  }
}

resource "google_storage_bucket_iam_member" "retrain_reads_data" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.retrain.member

  condition {
    title       = "raw-customer-file"
    description = "The raw customer file only"
    expression  = "resource.name == \"projects/_/buckets/${local.model_bucket}/objects/${var.data_object}\""
  }
}

# ---------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "predict" {
  #checkov:skip=CKV_GCP_124: reachable from anywhere by default, but every request needs roles/run.invoker, granted only to var.invokers; set serving_ingress for internal-only
  name        = "${var.name_prefix}-predict"
  project     = var.project
  location    = var.region
  description = "Scores customers (POST /), describes the model (GET /model), instance readiness (GET /health)"
  labels      = local.labels

  build_config {
    runtime         = local.runtime
    entry_point     = "predict"
    service_account = var.build_service_account
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source["predict"].name
      }
    }
  }

  service_config {
    available_memory                 = var.predict.memory
    available_cpu                    = var.predict.cpu
    timeout_seconds                  = var.predict.timeout
    max_instance_request_concurrency = var.predict.concurrency
    min_instance_count               = var.predict.min_instances
    max_instance_count               = var.predict.max_instances
    ingress_settings                 = var.serving_ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.serving.email
    environment_variables            = local.serving_env
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloudfunctions2_function" "health" {
  #checkov:skip=CKV_GCP_124: reachable from anywhere by default, but every request needs roles/run.invoker, granted only to var.invokers; set serving_ingress for internal-only
  name        = "${var.name_prefix}-health"
  project     = var.project
  location    = var.region
  description = "Model availability: 200 when the store's current model verifies, else 503"
  labels      = local.labels

  build_config {
    runtime         = local.runtime
    entry_point     = "health"
    service_account = var.build_service_account
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source["health"].name
      }
    }
  }

  service_config {
    available_memory                 = var.health.memory
    available_cpu                    = var.health.cpu
    timeout_seconds                  = var.health.timeout
    max_instance_request_concurrency = var.health.concurrency
    min_instance_count               = var.health.min_instances
    max_instance_count               = var.health.max_instances
    ingress_settings                 = var.serving_ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.serving.email
    environment_variables            = local.serving_env
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloudfunctions2_function" "retrain" {
  name        = "${var.name_prefix}-retrain"
  project     = var.project
  location    = var.region
  description = "The scheduled retrain: features, drift, train, gates, publish, promote"
  labels      = local.labels

  build_config {
    runtime         = local.runtime
    entry_point     = "retrain"
    service_account = var.build_service_account
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source["retrain"].name
      }
    }
  }

  service_config {
    available_memory                 = var.retrain.memory
    available_cpu                    = var.retrain.cpu
    timeout_seconds                  = var.retrain.timeout
    max_instance_request_concurrency = var.retrain.concurrency
    min_instance_count               = var.retrain.min_instances
    max_instance_count               = var.retrain.max_instances
    # Only Eventarc's push from this project's Pub/Sub reaches it.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.retrain.email
    environment_variables          = local.retrain_env
  }

  # Pub/Sub redelivers a message until the function acknowledges it. Safe: the run's
  # key is the schedule and the message's publish time, the same on every delivery, so a
  # finished run is a duplicate and an overlapping one is busy.
  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.retrain.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.retrain_trigger.email
  }

  depends_on = [google_project_service.apis]
}

# Invokers: only the principals named in var.invokers call predict and health; only the
# trigger's service account calls retrain. Nothing is granted to allUsers.
resource "google_cloud_run_service_iam_member" "predict_invoker" {
  for_each = toset(var.invokers)
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.predict.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_service_iam_member" "health_invoker" {
  for_each = toset(var.invokers)
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.health.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_service_iam_member" "retrain_invoker" {
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.retrain.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.retrain_trigger.member
}

# ---------------------------------------------------------------------------------------
# The schedule: Cloud Scheduler -> Pub/Sub -> retrain
# ---------------------------------------------------------------------------------------

resource "google_pubsub_topic" "retrain" {
  #checkov:skip=CKV_GCP_83: messages carry only the schedule's name and {"force": false}; Google-managed encryption suffices
  name    = "${var.name_prefix}-retrain"
  project = var.project
  labels  = local.labels
  # An undelivered schedule tick older than a day is stale: the next one replaces it.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.apis]
}

# A Pub/Sub target publishes as the Cloud Scheduler service agent (a pubsub_target takes
# no service account of ours); it may publish to this topic and to nothing else of ours.
resource "google_pubsub_topic_iam_member" "scheduler_publishes" {
  project = var.project
  topic   = google_pubsub_topic.retrain.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"

  depends_on = [google_project_service.apis]
}

resource "google_cloud_scheduler_job" "retrain" {
  name        = "${var.name_prefix}-retrain"
  project     = var.project
  region      = var.region
  description = "Starts the scheduled retrain; one run per scheduled time"
  schedule    = var.schedule
  time_zone   = var.time_zone

  # No scheduler retries: a re-publish would carry a new publish time, and so a new run
  # key. Delivery to the function is retried by Pub/Sub with the same message.
  retry_config {
    retry_count = 0
  }

  pubsub_target {
    topic_name = google_pubsub_topic.retrain.id
    # training.retrain.trigger.from_pubsub: the key is this attribute + the publish time.
    attributes = { schedule = "${var.name_prefix}-retrain" }
    data       = base64encode(jsonencode({ force = false }))
  }

  depends_on = [google_pubsub_topic_iam_member.scheduler_publishes]
}
