#!/usr/bin/env bash
# Make a self-signed certificate for trying TLS locally. FOR DEVELOPMENT ONLY: the key is
# unprotected and the certificate is trusted by nobody. Production deployments use a
# certificate from their own CA.
#
#   certs/make-dev-cert.sh            # writes certs/dev.crt and certs/dev.key
#
# Then add to the config:
#   [server.tls]
#   cert = "../certs/dev.crt"   # relative to the config file
#   key = "../certs/dev.key"
#   required = false
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
  -keyout dev.key -out dev.crt \
  -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
chmod 600 dev.key
echo "wrote $(pwd)/dev.crt and $(pwd)/dev.key (development only)"
