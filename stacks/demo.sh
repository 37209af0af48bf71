#!/usr/bin/env bash
# The strata demo: the whole story on one machine, narrated. Run it with `make demo`.
#
# A Git repository holds stacks/demo. strata plans it, applies it (Terraform creates a "network"
# and a "cluster" that starts a local Kubernetes API server; Kubernetes layers apply a platform
# and apps into it), notices a colleague's out-of-band edit and puts it back, and finally runs as
# an agent that picks up a new commit by itself, and commits (then converges) an image CI pushed
# to a registry. Every process it starts is stopped at the end.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
strata="$root/target/debug/strata"
work=$(mktemp -d /tmp/strata-demo.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

export TF_VAR_demo_dir="$work/cluster"
export TF_VAR_demo_port=$(free_port)
export TF_VAR_strata_bin="$strata"
export KUBECONFIG="$work/cluster/cluster.kubeconfig"
state="$work/state"
repo="$work/repo"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$work/cluster/cluster.pid" ]; then kill "$(cat "$work/cluster/cluster.pid")" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# Runs a command whose exit code is part of the story, and checks it.
expect() { local want=$1; shift; printf '$ %s\n' "$*"; set +e; "$@"; local got=$?; set -e
  printf '(exit %s)\n' "$got"; [ "$got" = "$want" ] || { echo "demo: expected exit $want" >&2; exit 1; }; }
git_commit() { git -C "$repo" -c user.name="Dana Developer" -c user.email=dana@example.com commit -qam "$1"; }

say "A Git repository with a stack: Terraform layers first, Kubernetes layers second"
cp -r "$root/stacks/demo" "$repo"
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name="Dana Developer" -c user.email=dana@example.com commit -qm "the demo stack"
run "$strata" graph --stack "$repo"

say "strata plan: what would change, layer by layer (exit 2: changes pending)"
expect 2 "$strata" plan --repo "$repo" --state-dir "$state"

say "strata apply: converge in graph order; each layer's outputs feed the next"
run "$strata" apply --repo "$repo" --state-dir "$state" --auto-approve
run kubectl get namespaces
run kubectl -n platform get configmap settings -o jsonpath='{.data}{"\n"}'
run kubectl -n platform get widgets
run kubectl -n apps get deployment web -o jsonpath='{.status.availableReplicas}/{.spec.replicas} replicas available{"\n"}'

say "A colleague edits the cluster by hand"
run kubectl -n platform patch configmap settings --type=merge -p '{"data":{"log_level":"debug"}}'
say "strata diff notices (exit 2: drift) ..."
expect 2 "$strata" diff --repo "$repo" --state-dir "$state"
say "... and strata apply puts Git's version back"
run "$strata" apply --repo "$repo" --state-dir "$state" --auto-approve
expect 0 "$strata" diff --repo "$repo" --state-dir "$state"

say "strata run: the agent pulls new commits by itself"
alerts="$work/alerts.jsonl"
receiver_port=$(free_port)
cat > "$work/receiver.py" <<PY
import http.server
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open("$alerts", "ab") as f:
            f.write(body + b"\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", $receiver_port), Hook).serve_forever()
PY
python3 "$work/receiver.py" & pids+=($!)
printf 'alert "webhook" "demo" { url = "http://127.0.0.1:%s/hook" }\n' "$receiver_port" > "$work/agent.hcl"
agent_port=$(free_port)
"$strata" run --repo "$repo" --state-dir "$state" --listen "127.0.0.1:$agent_port" \
  --config "$work/agent.hcl" --poll-interval 2s --drift-interval 3s > "$work/agent.log" 2>&1 & pids+=($!)
sleep 1
sed -i 's/replicas: 2/replicas: 3/' "$repo/k8s/apps/web.yaml"
git_commit "scale web to 3 replicas"
new=$(git -C "$repo" rev-parse HEAD)
printf '$ git commit -m "scale web to 3 replicas"   # %s\n' "$new"
echo "waiting for the agent's converged alert ..."
for _ in $(seq 1 120); do
  if grep -q "\"converged\".*$new\|$new.*\"converged\"" "$alerts" 2>/dev/null; then break; fi
  sleep 0.5
done
grep -q "$new" "$alerts" || { echo "demo: the agent did not converge the new commit; see $work/agent.log" >&2; exit 1; }
echo "alerts the receiver got:"
python3 -c "import json,sys
for line in open('$alerts'):
    e = json.loads(line); print('  {:17} {}  {}'.format(e['type'], e['revision'][:12], e['summary']))"
run kubectl -n apps get deployment web -o jsonpath='{.spec.replicas} replicas{"\n"}'
echo "\$ curl http://127.0.0.1:$agent_port/metrics | grep strata_revision_info"
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$agent_port/metrics').read().decode())" | grep '^strata_revision_info'

say "Image automation: CI pushes an image, the agent commits it to Git, then converges it"
reg_port=$(free_port)
mkdir -p "$work/registry"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n  secret: strata-demo\n' \
  "$work/registry/data" "$reg_port" > "$work/registry/config.yml"
docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$reg_port/v2/')" 2>/dev/null && break
  sleep 0.2
done
registry="127.0.0.1:$reg_port/shop/web"
push_image() { printf '$ ci: push %s:%s\n' "$registry" "$1"; python3 "$root/stacks/push_image.py" "127.0.0.1:$reg_port" shop/web "$1"; }
wait_converged() { # REVISION
  for _ in $(seq 1 240); do
    if grep -q "\"converged\".*$1\|$1.*\"converged\"" "$alerts" 2>/dev/null; then return; fi
    sleep 0.5
  done
  echo "demo: the agent did not converge $1; see $work/agent.log" >&2; exit 1
}
push_image 1.0.0
cat >> "$repo/strata.hcl" <<HCL

image "web" {
  repository    = "$registry"
  policy        = { semver = ">=1.0.0 <2.0.0" }
  interval      = "2s"
  insecure_http = true
}
HCL
sed -i "s|image: nginx:1.27|image: $registry:1.0.0 # strata:image web|" "$repo/k8s/apps/web.yaml"
# The agent pushes its commits here: a checked-out branch takes them into its work tree.
git -C "$repo" config receive.denyCurrentBranch updateInstead
git_commit "track the web image"
tracked=$(git -C "$repo" rev-parse HEAD)
printf '$ git commit -m "track the web image"   # marks k8s/apps/web.yaml: # strata:image web\n'
wait_converged "$tracked"
expect 0 "$strata" image scan --stack "$repo"
push_image 1.1.0
expect 2 "$strata" image scan --stack "$repo"
echo "waiting for the agent's commit ..."
for _ in $(seq 1 120); do
  [ "$(git -C "$repo" rev-parse HEAD)" != "$tracked" ] && break
  sleep 0.5
done
bumped=$(git -C "$repo" rev-parse HEAD)
[ "$bumped" != "$tracked" ] || { echo "demo: the agent made no image commit; see $work/agent.log" >&2; exit 1; }
run git -C "$repo" log -1 --format='%h %an: %s'
run git -C "$repo" show --format= --unified=0 HEAD
wait_converged "$bumped"
run kubectl -n apps get deployment web -o jsonpath='{.spec.template.spec.containers[0].image}{"\n"}'

say "The dashboard: the graph, drift and history at a glance"
dashboard="http://127.0.0.1:$agent_port/"
run kubectl -n apps patch deployment web --type=merge -p '{"spec":{"replicas":5}}'
echo "waiting for the agent's drift check to see it ..."
layer_state() { # LAYER: its state on the dashboard
  python3 -c "import json,sys,urllib.request
o = json.load(urllib.request.urlopen('${dashboard}api/v1/overview'))
print(next((l['state'] for l in o['layers'] if l['layer'] == sys.argv[1]), ''))" "$1"
}
for _ in $(seq 1 120); do
  [ "$(layer_state kubernetes.apps)" = drifted ] && break
  sleep 0.5
done
[ "$(layer_state kubernetes.apps)" = drifted ] || { echo "demo: the dashboard does not show the drift; see $work/agent.log" >&2; exit 1; }
echo "kubernetes.apps: drifted"
shot="$root/target/demo-dashboard.png"
sandbox=(); [ "$(id -u)" = 0 ] && sandbox=(--no-sandbox)   # Chromium's sandbox cannot start as root
chromium --headless=new "${sandbox[@]}" --disable-gpu --hide-scrollbars --window-size=1280,720 \
  --virtual-time-budget=5000 --screenshot="$shot" "$dashboard" >/dev/null 2>&1
[ -s "$shot" ] || { echo "demo: chromium left no screenshot" >&2; exit 1; }
echo "screenshot of the dashboard: $shot"


say "Where things are"
echo "  history:  $strata history --state-dir $state"
echo "  status:   $strata status --state-dir $state"
echo "  reports:  $state/reports/ ($strata report --state-dir $state)"
echo "  alerts:   $state/alerts.jsonl"
run "$strata" history --state-dir "$state" --limit 3
echo
echo "demo finished (screenshot of the dashboard: $shot)"
echo "dashboard: $dashboard"
if [ -t 0 ] && [ -z "${CI:-}" ]; then
  read -r -p "the agent serves it until you press Enter, which stops the agent, the alert receiver and the demo cluster " _ || true
fi
