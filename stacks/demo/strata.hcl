# The demo stack: a network and a cluster made with Terraform, then a platform and apps applied
# into the cluster. `strata graph --stack stacks/demo` shows the order.

stack "demo" {
  parallelism    = 4
  poll_interval  = "1m"
  drift_interval = "10m"
  alert_after    = "0s"
}

terraform "network" {
  source = "infra/network"
  vars   = { cidr = "10.0.0.0/16" }
}

terraform "cluster" {
  source         = "infra/cluster"
  workspace      = "default"
  backend_config = {}
  vars           = { subnet_id = terraform.network.outputs.subnet_id }
  drift          = "report"
  apply          = "auto"
  timeout        = "30m"
}

cluster "main" {
  kubeconfig = terraform.cluster.outputs.kubeconfig
}

kubernetes "platform" {
  source    = "k8s/platform"
  cluster   = cluster.main
  namespace = "platform"
  prune     = true
  wait      = true
  drift     = "correct"
  vars      = { db_host = terraform.cluster.outputs.db_host }
}

kubernetes "apps" {
  source     = "k8s/apps"
  cluster    = cluster.main
  namespace  = "apps"
  depends_on = [kubernetes.platform]
}
