# A stand-in for a managed cluster: a null_resource keyed on the subnet it lives in. Its outputs
# are what the Kubernetes layers consume: a database host and the cluster's kubeconfig.
terraform {
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1"
    }
  }
}

variable "subnet_id" {
  type = string
}

variable "kubeconfig_path" {
  type        = string
  description = "Where the cluster's kubeconfig is read from."
  default     = "kubeconfig.yaml"
}

module "labels" {
  source = "../modules/labels"
  layer  = "cluster"
}

resource "null_resource" "cluster" {
  triggers = {
    subnet_id = var.subnet_id
  }
}

output "db_host" {
  value = "db.${var.subnet_id}.internal"
}

output "kubeconfig" {
  value     = fileexists(var.kubeconfig_path) ? file(var.kubeconfig_path) : ""
  sensitive = true
}
