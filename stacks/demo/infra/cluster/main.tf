# A stand-in for a managed cluster: a null_resource keyed on the subnet it lives in, whose
# provisioner starts a local Kubernetes API server (`strata devcluster`) in the background. Its
# outputs are what the Kubernetes layers consume: a database host and the cluster's kubeconfig.
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

variable "demo_dir" {
  type        = string
  description = "Where the demo keeps its cluster's kubeconfig, data and pid (set TF_VAR_demo_dir)."
  default     = "/tmp/strata-demo"
}

variable "demo_port" {
  type        = number
  description = "The port the demo cluster listens on (set TF_VAR_demo_port)."
  default     = 16443
}

variable "strata_bin" {
  type        = string
  description = "The strata binary that serves the demo cluster (set TF_VAR_strata_bin)."
  default     = "strata"
}

module "labels" {
  source = "../modules/labels"
  layer  = "cluster"
}

locals {
  kubeconfig = "${var.demo_dir}/cluster.kubeconfig"
}

resource "null_resource" "cluster" {
  triggers = {
    subnet_id = var.subnet_id
    port      = var.demo_port
  }

  # Start the cluster detached from terraform (setsid), so it outlives this apply; wait until it
  # has written its kubeconfig.
  provisioner "local-exec" {
    command = <<-EOT
      mkdir -p ${var.demo_dir}
      rm -f ${local.kubeconfig}
      setsid ${var.strata_bin} devcluster --listen 127.0.0.1:${var.demo_port} \
        --kubeconfig-out ${local.kubeconfig} --data ${var.demo_dir}/cluster.json \
        --simulate-ready 2s > ${var.demo_dir}/cluster.log 2>&1 < /dev/null &
      echo $! > ${var.demo_dir}/cluster.pid
      for i in $(seq 1 100); do [ -s ${local.kubeconfig} ] && exit 0; sleep 0.1; done
      echo "the demo cluster did not start; see ${var.demo_dir}/cluster.log" >&2
      exit 1
    EOT
  }
}

output "db_host" {
  value = "db.${var.subnet_id}.internal"
}

# Unknown until the cluster exists; read once the provisioner has written it.
output "kubeconfig" {
  value     = null_resource.cluster.id == "" ? "" : (fileexists(local.kubeconfig) ? file(local.kubeconfig) : "")
  sensitive = true
}
