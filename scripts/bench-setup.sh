#!/usr/bin/env bash
# Installs what `meshproxy-loadtest bench` compares against: nginx (nginx-light, or nginx),
# HAProxy, and taskset (util-linux) for pinning. Debian/Ubuntu, apt-get. Idempotent: packages
# already installed are left alone. The packages' system services are NOT started: the
# benchmark runs its own nginx and HAProxy processes with generated configs.
#
#   sudo scripts/bench-setup.sh        (or as root)
set -euo pipefail

if ! command -v apt-get >/dev/null 2>&1; then
  echo "bench-setup: apt-get not found; install nginx, haproxy and taskset (util-linux) by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# nginx: the light flavour if the distribution has it, else the default one. Either
# provides /usr/sbin/nginx.
nginx_pkg=""
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  nginx_pkg="nginx"
fi

missing=""
[ -n "$nginx_pkg" ] && missing="$missing NGINX"
installed haproxy || missing="$missing haproxy"
command -v taskset >/dev/null 2>&1 || missing="$missing util-linux"

if [ -z "$missing" ]; then
  echo "bench-setup: nginx, haproxy and taskset are already installed"
  exit 0
fi

$SUDO apt-get update -qq
if [ -n "$nginx_pkg" ]; then
  if apt-cache show nginx-light >/dev/null 2>&1; then
    nginx_pkg="nginx-light"
  fi
  missing="${missing/NGINX/$nginx_pkg}"
fi

# Keep invoke-rc.d from starting the services the packages ship (nginx on port 80,
# haproxy): a policy-rc.d answering 101 ("action forbidden") for the duration of the
# install, then the previous one (if any) back.
policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
  backup="$(mktemp)"
  $SUDO cp -p "$policy" "$backup"
fi
restore() {
  if [ -n "$backup" ]; then
    $SUDO cp -p "$backup" "$policy"
    rm -f "$backup"
  else
    $SUDO rm -f "$policy"
  fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
$SUDO chmod 755 "$policy"

echo "bench-setup: installing$missing"
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing

for b in nginx haproxy taskset; do
  p="$(command -v "$b" || true)"
  [ -z "$p" ] && [ -x "/usr/sbin/$b" ] && p="/usr/sbin/$b"
  echo "bench-setup: $b -> ${p:-MISSING}"
done
