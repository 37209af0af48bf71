# Labels shared by the demo's Terraform layers.
variable "layer" {
  type = string
}

output "labels" {
  value = {
    "app.kubernetes.io/managed-by" = "strata"
    "strata.dev/layer"             = var.layer
  }
}
