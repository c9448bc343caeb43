variable "project" {
  description = "Google Cloud project id to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, the scheduler job and the buckets."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, buckets, topic, service accounts)."
  type        = string
  default     = "segmentation"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,15}$", var.name_prefix))
    error_message = "name_prefix: 3 to 16 lowercase letters, digits or dashes, starting with a letter (service account ids are at most 30 characters)."
  }
}

variable "model_bucket" {
  description = "Name of the model bucket; default \"<project>-<name_prefix>-models\" (bucket names are global)."
  type        = string
  default     = null
}

variable "model_store_prefix" {
  description = "Object-name prefix of the model store inside the model bucket (no leading or trailing slash)."
  type        = string
  default     = "segmentation"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.model_store_prefix))
    error_message = "model_store_prefix: a non-empty object-name prefix without leading or trailing slash."
  }
}

variable "data_object" {
  description = "Object in the model bucket holding the raw customer file (CSV or Parquet) that retrain reads."
  type        = string
  default     = "raw/customers.csv"
}

variable "pointer_poll_seconds" {
  description = "How often a serving instance re-reads the model pointer (SEGMENTATION_POINTER_POLL_SECONDS)."
  type        = number
  default     = 30
}

variable "invokers" {
  description = "Principals allowed to call predict and health, e.g. [\"serviceAccount:app@p.iam.gserviceaccount.com\", \"group:analysts@example.com\"]. Never allUsers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "invokers: name principals (user:, group:, serviceAccount:, domain:); allUsers and allAuthenticatedUsers would make the functions public."
  }
}

variable "serving_ingress" {
  description = "Ingress of predict and health: ALLOW_ALL (IAM still required), ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  type        = string
  default     = "ALLOW_ALL"
}

# Sizing and scaling, one object per function: every attribute is optional, so
# -var 'predict={min_instances=0}' changes only that knob. concurrency above 1 needs a
# whole CPU; min_instances above 0 is billed while idle.
variable "predict" {
  description = "predict: memory, cpu, timeout (s), concurrency (requests per instance), min/max instances."
  type = object({
    memory        = optional(string, "512Mi")
    cpu           = optional(string, "1")
    timeout       = optional(number, 30)
    concurrency   = optional(number, 8)
    min_instances = optional(number, 1)
    max_instances = optional(number, 20)
  })
  default = {}

  validation {
    condition     = var.predict.concurrency == 1 || tonumber(var.predict.cpu) >= 1
    error_message = "predict: concurrency above 1 needs cpu >= 1."
  }
}

variable "health" {
  description = "health: memory, cpu, timeout (s), concurrency (requests per instance), min/max instances."
  type = object({
    memory        = optional(string, "512Mi")
    cpu           = optional(string, "1")
    timeout       = optional(number, 30)
    concurrency   = optional(number, 8)
    min_instances = optional(number, 0)
    max_instances = optional(number, 3)
  })
  default = {}

  validation {
    condition     = var.health.concurrency == 1 || tonumber(var.health.cpu) >= 1
    error_message = "health: concurrency above 1 needs cpu >= 1."
  }
}

variable "retrain" {
  description = "retrain: memory, cpu, timeout (s, at most 540 for an event-triggered function), concurrency, min/max instances."
  type = object({
    memory        = optional(string, "4Gi")
    cpu           = optional(string, "2")
    timeout       = optional(number, 540)
    concurrency   = optional(number, 1)
    min_instances = optional(number, 0)
    max_instances = optional(number, 1)
  })
  default = {}

  validation {
    condition     = var.retrain.timeout <= 540
    error_message = "retrain: Cloud Functions 2nd gen caps event-triggered functions at 540 s."
  }
}

variable "schedule" {
  description = "Cron schedule of the retrain run (Cloud Scheduler syntax)."
  type        = string
  default     = "0 3 * * *"
}

variable "time_zone" {
  description = "Time zone the schedule is read in (tz database name)."
  type        = string
  default     = "Etc/UTC"
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept in the model bucket before it is deleted."
  type        = number
  default     = 90
}

variable "build_service_account" {
  description = "Service account Cloud Build builds the functions as (projects/<project>/serviceAccounts/<email>); null: the project's default build service account."
  type        = string
  default     = null
}
