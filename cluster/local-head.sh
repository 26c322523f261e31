#!/usr/bin/env bash
# A Ray head on this machine for development, with token authentication on and
# every port bound to 127.0.0.1. Jobs then go in the way they do on a cluster:
#
#   cluster/local-head.sh                     # prints the address to submit to
#   export RAY_AUTH_MODE=token                # the client sends ~/.ray/auth_token
#   ray job submit --address http://127.0.0.1:8265 --working-dir . -- raydsbs run jobs/quickstart.yaml
#   ray stop                                  # when done
#
# The token is $RAY_AUTH_TOKEN, or $RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token
# (made here on first use). Ports: RAYDSBS_HEAD_PORT (6379) and
# RAYDSBS_DASHBOARD_PORT (8265). Other arguments go to `ray start` as they are,
# e.g. --num-cpus=4 (on a 2-core machine, see ray.num_cpus) or --block.
set -euo pipefail
export RAY_AUTH_MODE=token
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
    ray get-auth-token --generate > /dev/null
fi
exec ray start --head \
    --node-ip-address=127.0.0.1 \
    --port="${RAYDSBS_HEAD_PORT:-6379}" \
    --dashboard-host=127.0.0.1 \
    --dashboard-port="${RAYDSBS_DASHBOARD_PORT:-8265}" \
    --disable-usage-stats \
    "$@"
