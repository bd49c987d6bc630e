#!/usr/bin/env bash
# Install the system packages the demo and the tests need, if missing:
# redis-server, Prometheus and openssl from Debian's packages. A JDK and Maven
# must be there already (the Kafka broker's jars are fetched by `mvn` on first
# use; the Java interop tests compile a program with `javac`).
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
# The security tests make throwaway certificates with it.
command -v openssl >/dev/null || missing+=(openssl)

if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # An install from a stale package index can fail; refresh once and retry.
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && \
         $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
  # Debian starts the services it just installed; the scorer runs its own on
  # free ports. Stop only those: through systemd, or, where there is none (a
  # container), through the package's init script, which stops the process
  # of its own pid file and leaves any other redis-server alone.
  for package in "${missing[@]}"; do
    case "$package" in redis-server | prometheus) ;; *) continue ;; esac
    $sudo systemctl disable --now "$package" >/dev/null 2>&1 || true
    if [ -x "/etc/init.d/$package" ]; then
      $sudo "/etc/init.d/$package" stop >/dev/null 2>&1 || true
    fi
  done
fi

for tool in java javac mvn redis-server openssl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
