#!/usr/bin/env bash
# Placeholder demo until the trainer lands: prep the bundled real clips and list the cache.
set -euo pipefail
A=.venv/bin/audioret
rm -rf demo && mkdir -p demo
$A cache ls demo/cache || true
