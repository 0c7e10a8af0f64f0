#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (real server over real sockets and real
# files), randomized framing and doc tests. Extra arguments go to `cargo test`.
# First it checks formatting and clippy's lints, with every feature too (the axum
# baseline, the glommio floor, the criterion benches), so nothing that `cargo test`
# does not build can rot.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found. Install a Rust toolchain (https://rustup.rs) and retry." >&2
  exit 1
fi

# The power-loss tests mount a fault-injecting FUSE filesystem: as root through the
# mount syscall, otherwise through fusermount3 (Debian's fuse3). They never skip, so a
# machine without FUSE fails here, with the reason, rather than in the middle.
if [ ! -c /dev/fuse ] && [ "$(id -u)" = 0 ]; then
  modprobe fuse 2>/dev/null || true
fi
if [ ! -c /dev/fuse ]; then
  echo "test.sh: /dev/fuse is missing: the power-loss tests need FUSE (modprobe fuse; in a container, --device /dev/fuse)." >&2
  exit 1
fi
if [ "$(id -u)" != 0 ] && ! command -v fusermount3 >/dev/null 2>&1; then
  echo "test.sh: fusermount3 is missing: install it (Debian/Ubuntu: apt-get install fuse3) or run as root." >&2
  exit 1
fi

# The ship tests run a throwaway PostgreSQL (initdb + pg_ctl on a Unix socket in a temp
# dir). Install Debian's postgresql when its server binaries are missing; with CI set,
# a missing PostgreSQL fails the run here instead of later.
find_initdb() {
  command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1
}
if [ -z "$(find_initdb)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing postgresql for the ship tests" >&2
    apt-get install -y postgresql >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y postgresql >/dev/null; } || true
  fi
  if [ -z "$(find_initdb)" ]; then
    echo "test.sh: PostgreSQL's server binaries (initdb, pg_ctl) are missing: install them (Debian/Ubuntu: apt-get install postgresql) and retry." >&2
    exit 1
  fi
fi

# The metrics tests parse /metrics with the Prometheus project's Python client
# (prometheus_client): Debian's python3-prometheus-client, else from PyPI with pip.
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing python3-prometheus-client for the metrics tests" >&2
    apt-get install -y python3 python3-prometheus-client >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y python3 python3-prometheus-client >/dev/null; } || true
  fi
  if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import prometheus_client' 2>/dev/null; then
    # A python3 that is not Debian's (pyenv, say) does not see Debian's packages.
    python3 -m pip install --quiet prometheus_client >/dev/null 2>&1 \
      || python3 -m pip install --quiet --break-system-packages prometheus_client >/dev/null 2>&1 || true
  fi
  if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    echo "test.sh: python3 with the prometheus_client package is missing: install it (Debian/Ubuntu: apt-get install python3-prometheus-client; else pip install prometheus_client) and retry." >&2
    exit 1
  fi
fi

# The FHIR R4 test cross-checks the server against an independent validator:
# fhir.resources 6.4.0 (the last release whose models are R4 4.0.1; it needs pydantic
# 1), pinned in a virtual environment of its own so it never meets the system's
# pydantic 2. Without it tests/fhir_r4.rs fails under CI and skips
# otherwise.
FHIR_VENV=target/fhir-r4-venv
if ! "$FHIR_VENV/bin/python" -c 'import fhir.resources as f; assert f.__fhir_version__ == "4.0.1"' 2>/dev/null; then
  echo "test.sh: installing fhir.resources 6.4.0 (R4) into $FHIR_VENV for the FHIR test" >&2
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y python3-venv >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y python3-venv >/dev/null; } || true
  fi
  python3 -m venv "$FHIR_VENV" >/dev/null 2>&1 \
    && "$FHIR_VENV/bin/pip" install --quiet fhir.resources==6.4.0 pydantic==1.10.27 >/dev/null 2>&1 || true
  if ! "$FHIR_VENV/bin/python" -c 'import fhir.resources' 2>/dev/null; then
    echo "test.sh: the R4 validator is missing: python3 -m venv $FHIR_VENV && $FHIR_VENV/bin/pip install fhir.resources==6.4.0 pydantic==1.10.27, and retry." >&2
    exit 1
  fi
fi

# The OpenAPI test validates docs/openapi.json with openapi-spec-validator (PyPI).
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  echo "test.sh: installing openapi-spec-validator for the OpenAPI test" >&2
  if ! python3 -m pip --version >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y python3-pip >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y python3-pip >/dev/null; } || true
  fi
  python3 -m pip install --quiet openapi-spec-validator >/dev/null 2>&1 \
    || python3 -m pip install --quiet --break-system-packages openapi-spec-validator >/dev/null 2>&1 || true
  if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
    echo "test.sh: python3 with openapi-spec-validator is missing: pip install openapi-spec-validator (or apt-get install python3-pip first) and retry." >&2
    exit 1
  fi
fi

# The OpenAPI test runs schemathesis (PyPI) against a live server.
if ! command -v schemathesis >/dev/null 2>&1; then
  echo "test.sh: installing schemathesis for the OpenAPI test" >&2
  python3 -m pip install --quiet schemathesis >/dev/null 2>&1 \
    || python3 -m pip install --quiet --break-system-packages schemathesis >/dev/null 2>&1 || true
  if ! command -v schemathesis >/dev/null 2>&1; then
    echo "test.sh: schemathesis is missing: pip install schemathesis and retry." >&2
    exit 1
  fi
fi

# The deploy test checks the systemd unit with systemd-analyze (Debian's systemd).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing systemd (systemd-analyze) for the deploy test" >&2
    apt-get install -y systemd >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y systemd >/dev/null; } || true
  fi
  if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "test.sh: systemd-analyze is missing: install it (Debian/Ubuntu: apt-get install systemd) and retry." >&2
    exit 1
  fi
fi

# The container test applies deploy/seccomp-io_uring.json with seccomp(2), numbering
# the system calls from the kernel headers (Debian's linux-libc-dev).
if [ ! -f /usr/include/x86_64-linux-gnu/asm/unistd_64.h ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y linux-libc-dev >/dev/null 2>&1 || true
  fi
  if [ ! -f /usr/include/x86_64-linux-gnu/asm/unistd_64.h ]; then
    echo "test.sh: /usr/include/x86_64-linux-gnu/asm/unistd_64.h is missing: install linux-libc-dev (x86_64 only) and retry." >&2
    exit 1
  fi
fi

# The reverse-proxy test runs deploy/nginx/epro-ingest.conf in nginx, with a
# certificate from openssl, and requests through it with curl.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] || ! command -v curl >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing nginx-light, curl and openssl for the proxy test" >&2
    apt-get install -y nginx-light curl openssl >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y nginx-light curl openssl >/dev/null; } || true
  fi
fi
export PATH="$PATH:/usr/sbin"
if ! command -v nginx >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  echo "test.sh: nginx, curl or openssl is missing: install them (Debian/Ubuntu: apt-get install nginx-light curl openssl) and retry." >&2
  exit 1
fi

# Style gates: rustfmt, and clippy with warnings as errors on the default build and
# with every feature (an import used only under a feature is unused without it). The
# all-features run also type-checks every target: the axum baseline, the glommio floor
# and the criterion benches, which `cargo test` does not build.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then
    echo "test.sh: installing rustfmt and clippy" >&2
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
  fi
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "test.sh: rustfmt or clippy is missing: rustup component add rustfmt clippy, and retry." >&2
    exit 1
  fi
fi
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --all-targets --all-features -- -D warnings

# test-seams: the fault seams some tests inject through requests (panics); release
# builds never have them.
cargo test --locked --features test-seams "$@"
