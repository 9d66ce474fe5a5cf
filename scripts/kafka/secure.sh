#!/usr/bin/env bash
# Secured listeners for the test broker of scripts/kafka.sh (KAFKA_SECURE=1).
#
# Sourced by scripts/kafka.sh, which calls the secure_* functions below; it
# only defines variables and functions, and every hook is a no-op unless
# KAFKA_SECURE=1. With KAFKA_SECURE=1, `kafka.sh start`:
#   - makes once per data directory, in $DATA_DIR/tls/ (openssl, PEM): a test
#     CA (ca.pem), a broker certificate for localhost / 127.0.0.1 (SAN),
#     packed with its key and the CA into the PKCS12 keystore broker.p12, a
#     client certificate for mutual TLS (client.pem + client.key, subject
#     CN=sendgate-client, so principal User:CN=sendgate-client) and the RSA key
#     that signs the test OIDC tokens (oidc-signing.key);
#   - adds two listeners beside PLAINTEXT (inter-broker and controller traffic
#     stay PLAINTEXT):
#       SASL_SSL on KAFKA_SASL_SSL_PORT (default KAFKA_PORT+2) with PLAIN,
#         SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER; OAUTHBEARER tokens are
#         RS256 JWTs checked by OAuthBearerValidatorCallbackHandler against
#         the JWKS of the test token server (signature, exp, iss, aud);
#       SSL on KAFKA_SSL_PORT (default KAFKA_PORT+3) with
#         ssl.client.auth=required (a client needs a certificate of the CA);
#   - creates the SCRAM users (SHA-256 and SHA-512 credentials; written into
#     the storage by `format --add-scram` for a new data directory, else once
#     each with kafka.admin.ConfigCommand after start) and the PLAIN user (in
#     the listener's JAAS config);
#   - turns on the standard KRaft authorizer (StandardAuthorizer, no access
#     without an ACL): the PLAINTEXT and controller listeners' principal
#     (User:ANONYMOUS) and the users above are super users, so every other
#     test runs as before; the SCRAM users sendgate_service, sendgate_app and
#     sendgate_pipeline are not, and can do only what ACLs grant them;
#   - starts scripts/kafka/oidc_token_server.py on 127.0.0.1:KAFKA_OIDC_PORT
#     (default KAFKA_PORT+4; pid $DATA_DIR/oidc.pid, log $DATA_DIR/oidc.log)
#     before the broker, which fetches the JWKS at start-up; `stop` stops it;
#   - writes $DATA_DIR/tls/credentials.env (KEY=VALUE lines, fixed test
#     passwords, no quoting) with what a client needs; `kafka.sh env` prints it.
# Readiness is still probed on the PLAINTEXT port.
#
# credentials.env keys:
#   KAFKA_BOOTSTRAP            PLAINTEXT 127.0.0.1:port
#   KAFKA_SASL_SSL_BOOTSTRAP   SASL_SSL 127.0.0.1:port
#   KAFKA_SSL_BOOTSTRAP        SSL (mutual TLS) 127.0.0.1:port
#   KAFKA_SSL_CA_LOCATION      CA certificate (PEM), librdkafka ssl.ca.location
#   KAFKA_SSL_CERTIFICATE_LOCATION, KAFKA_SSL_KEY_LOCATION
#                              client certificate and unencrypted key (PEM)
#   KAFKA_SSL_CLIENT_PRINCIPAL the principal the broker sees on the SSL port
#   KAFKA_PLAIN_USERNAME, KAFKA_PLAIN_PASSWORD
#   KAFKA_SCRAM_USERNAME, KAFKA_SCRAM_PASSWORD   (SCRAM-SHA-256 and -512)
#   KAFKA_OIDC_PORT, KAFKA_OIDC_TOKEN_ENDPOINT_URL, KAFKA_OIDC_JWKS_URL,
#   KAFKA_OIDC_CLIENT_ID, KAFKA_OIDC_CLIENT_SECRET, KAFKA_OIDC_SCOPE,
#   KAFKA_OIDC_ISSUER, KAFKA_OIDC_AUDIENCE
#   KAFKA_ACL_USERS             the SCRAM users without super-user rights
#   KAFKA_ACL_<USER>_PASSWORD   each one's password (USER upper-cased)
#
# Settings (environment):
#   KAFKA_SECURE           1 to enable all of the above (default unset: off)
#   KAFKA_SASL_SSL_PORT    SASL_SSL listener port   (default KAFKA_PORT+2)
#   KAFKA_SSL_PORT         mutual-TLS listener port (default KAFKA_PORT+3)
#   KAFKA_OIDC_PORT        token server port        (default KAFKA_PORT+4)
#   PYTHON                 Python 3.9+ for the token server (default python3)
#
# Expects from kafka.sh: KAFKA_PORT, KAFKA_CONTROLLER_PORT, DATA_DIR,
# CONF_DIR, PROPS, KAFKA_JVM_OPTS and its functions log, die, run_tool,
# terminate. port_open, running_pid, process_cmdline and stop_process come
# from scripts/lib/service.sh.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "secure.sh is sourced by scripts/kafka.sh; run: KAFKA_SECURE=1 scripts/kafka.sh start" >&2
  exit 2
fi

# shellcheck source=SCRIPTDIR/../lib/service.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/service.sh"

KAFKA_SECURE="${KAFKA_SECURE:-}"
KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 2))}"
KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-$((KAFKA_PORT + 3))}"
KAFKA_OIDC_PORT="${KAFKA_OIDC_PORT:-$((KAFKA_PORT + 4))}"
PYTHON="${PYTHON:-python3}"

TLS_DIR="$DATA_DIR/tls"
CREDENTIALS_ENV="$TLS_DIR/credentials.env"
# Marks a TLS directory whose generation finished.
TLS_STAMP="$TLS_DIR/.complete"
# Present once the SCRAM user exists in this data directory's metadata.
SCRAM_STAMP="$TLS_DIR/scram-users.done"
OIDC_PID_FILE="$DATA_DIR/oidc.pid"
OIDC_LOG="$DATA_DIR/oidc.log"

# Fixed test secrets: this broker listens on loopback only and exists for tests.
SECURE_STORE_PASSWORD="sendgate-store-secret"
SECURE_PLAIN_USER="sendgate_plain"
SECURE_PLAIN_PASSWORD="sendgate-plain-secret"
SECURE_SCRAM_USER="sendgate_scram"
SECURE_SCRAM_PASSWORD="sendgate-scram-secret"
SECURE_OIDC_CLIENT_ID="sendgate-oidc-client"
SECURE_OIDC_CLIENT_SECRET="sendgate-oidc-secret"
SECURE_OIDC_AUDIENCE="sendgate-kafka"
SECURE_OIDC_SCOPE="kafka"
SECURE_OIDC_KID="sendgate-test-key-1"
SECURE_CLIENT_CN="sendgate-client"
# SCRAM users that get no super-user rights: only the ACLs a test grants
# them (the three principals of docs/connecting.md's "Access control").
SECURE_ACL_USERS=(sendgate_service sendgate_app sendgate_pipeline)
SECURE_ACL_PASSWORD_SUFFIX="-acl-secret"
SECURE_OIDC_BASE="http://127.0.0.1:$KAFKA_OIDC_PORT"

# Extra arguments for `StorageTool format` (set by secure_prepare).
SECURE_FORMAT_ARGS=()
SECURE_SCRAM_AT_FORMAT=0
SECURE_STARTED=0

secure_enabled() { [[ "$KAFKA_SECURE" == 1 ]]; }

# --- TLS material ------------------------------------------------------------

# $1 dir, $2 name, $3 subject, $4 extensions (one per line): a key and a
# certificate signed by the CA in $1.
secure_issue_cert() {
  local dir="$1" name="$2" subject="$3" ext="$4"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/$name.key" \
    -subj "$subject" -out "$dir/$name.csr" 2>/dev/null || return 1
  printf '%s\n' "$ext" >"$dir/$name.ext" || return 1
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
    -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null || return 1
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

# Everything in directory $1; each step checked (set -e does not apply in a
# function whose status is tested).
secure_generate_tls() {
  local dir="$1"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" \
    -days 3650 -sha256 -subj "/CN=sendgate test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
  secure_issue_cert "$dir" broker "/CN=localhost" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1" || return 1
  secure_issue_cert "$dir" client "/CN=$SECURE_CLIENT_CN" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth" || return 1
  # The broker's keystore: key, certificate and CA chain. PKCS12 because a
  # file-based PEM keystore would need an encrypted PKCS#8 key.
  openssl pkcs12 -export -name broker -in "$dir/broker.pem" -inkey "$dir/broker.key" \
    -certfile "$dir/ca.pem" -passout "pass:$SECURE_STORE_PASSWORD" -out "$dir/broker.p12" || return 1
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$dir/oidc-signing.key" 2>/dev/null || return 1
  openssl verify -CAfile "$dir/ca.pem" "$dir/broker.pem" "$dir/client.pem" >/dev/null || return 1
  # The CA and the client's files are read by the tests' clients; the
  # private keys of the CA, the broker and the token signer stay private.
  chmod 600 "$dir"/*.key "$dir/broker.p12" || return 1
  chmod 644 "$dir/ca.pem" "$dir/broker.pem" "$dir/client.pem" "$dir/client.key" || return 1
}

secure_make_tls() {
  [[ -f "$TLS_STAMP" ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found (KAFKA_SECURE=1 makes test certificates with it)"
  log "making test CA and certificates in $TLS_DIR"
  # Build aside and rename, so an interrupted run never leaves half a set.
  local tmp="$TLS_DIR.tmp.$$"
  rm -rf "$tmp" "$TLS_DIR"
  mkdir -p "$tmp"
  if ! secure_generate_tls "$tmp"; then
    rm -rf "$tmp"
    die "making the test certificates with openssl failed"
  fi
  touch "$tmp/.complete"
  mv "$tmp" "$TLS_DIR"
}

secure_write_credentials() {
  {
    echo "# Written by scripts/kafka/secure.sh on each KAFKA_SECURE=1 start; fixed test secrets."
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
    echo "KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_SSL_PORT"
    echo "KAFKA_SSL_BOOTSTRAP=127.0.0.1:$KAFKA_SSL_PORT"
    echo "KAFKA_SASL_SSL_PORT=$KAFKA_SASL_SSL_PORT"
    echo "KAFKA_SSL_PORT=$KAFKA_SSL_PORT"
    echo "KAFKA_SSL_CA_LOCATION=$TLS_DIR/ca.pem"
    echo "KAFKA_SSL_CERTIFICATE_LOCATION=$TLS_DIR/client.pem"
    echo "KAFKA_SSL_KEY_LOCATION=$TLS_DIR/client.key"
    echo "KAFKA_SSL_CLIENT_PRINCIPAL=User:CN=$SECURE_CLIENT_CN"
    echo "KAFKA_PLAIN_USERNAME=$SECURE_PLAIN_USER"
    echo "KAFKA_PLAIN_PASSWORD=$SECURE_PLAIN_PASSWORD"
    echo "KAFKA_SCRAM_USERNAME=$SECURE_SCRAM_USER"
    echo "KAFKA_SCRAM_PASSWORD=$SECURE_SCRAM_PASSWORD"
    echo "KAFKA_OIDC_PORT=$KAFKA_OIDC_PORT"
    echo "KAFKA_OIDC_TOKEN_ENDPOINT_URL=$SECURE_OIDC_BASE/token"
    echo "KAFKA_OIDC_JWKS_URL=$SECURE_OIDC_BASE/jwks"
    echo "KAFKA_OIDC_CLIENT_ID=$SECURE_OIDC_CLIENT_ID"
    echo "KAFKA_OIDC_CLIENT_SECRET=$SECURE_OIDC_CLIENT_SECRET"
    echo "KAFKA_OIDC_SCOPE=$SECURE_OIDC_SCOPE"
    echo "KAFKA_OIDC_ISSUER=$SECURE_OIDC_BASE"
    echo "KAFKA_OIDC_AUDIENCE=$SECURE_OIDC_AUDIENCE"
    echo "KAFKA_ACL_USERS=${SECURE_ACL_USERS[*]}"
    local u
    for u in "${SECURE_ACL_USERS[@]}"; do
      echo "KAFKA_ACL_${u^^}_PASSWORD=$u$SECURE_ACL_PASSWORD_SUFFIX"
    done
  } >"$CREDENTIALS_ENV.tmp"
  chmod 644 "$CREDENTIALS_ENV.tmp"
  mv "$CREDENTIALS_ENV.tmp" "$CREDENTIALS_ENV"
}

# --- broker configuration ----------------------------------------------------

# Lines appended to server.properties after the template (and before
# KAFKA_EXTRA_PROPERTIES, which still wins): a later key replaces an earlier one.
secure_properties() {
  secure_enabled || return 0
  local l="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
  l+=",SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT"
  cat <<EOF

############################# Secured listeners (KAFKA_SECURE=1) #############################
# From scripts/kafka/secure.sh. Inter-broker and controller traffic stay on
# the PLAINTEXT listeners above.
listeners=$l
advertised.listeners=$l
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL

# TLS for both secured listeners: test CA and broker certificate from $TLS_DIR.
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$SECURE_STORE_PASSWORD
ssl.key.password=$SECURE_STORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
# Mutual TLS on the SSL listener only; SASL_SSL clients need no certificate.
listener.name.ssl.ssl.client.auth=required

# SASL_SSL: PLAIN users come from the JAAS config, SCRAM users from the
# cluster metadata (format --add-scram / ConfigCommand), OAUTHBEARER tokens
# are JWTs from the test token server, validated against its JWKS.
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SECURE_PLAIN_USER="$SECURE_PLAIN_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
# The JWKS URL must also be allowed by the JVM system property
# org.apache.kafka.sasl.oauthbearer.allowed.urls (added to the broker's JVM flags).
sasl.oauthbearer.jwks.endpoint.url=$SECURE_OIDC_BASE/jwks
sasl.oauthbearer.expected.issuer=$SECURE_OIDC_BASE
sasl.oauthbearer.expected.audience=$SECURE_OIDC_AUDIENCE

# Authorization: the standard KRaft authorizer, and no access without an ACL
# (allow.everyone.if.no.acl.found stays false). Super users: ANONYMOUS (the
# PLAINTEXT and controller listeners), and the PLAIN, SCRAM, mutual-TLS and
# OIDC test users. ${SECURE_ACL_USERS[*]} are not: they get only the ACLs
# granted to them.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:$SECURE_PLAIN_USER;User:$SECURE_SCRAM_USER;User:CN=$SECURE_CLIENT_CN;User:$SECURE_OIDC_CLIENT_ID
EOF
}

# --- token server ------------------------------------------------------------

# True when $1 is the token server of this data directory (it was given
# this pid file), so a reused pid is never stopped.
secure_is_our_token_server() {
  local args
  args="$(process_cmdline "$1")" || return 1
  [[ "$args" == *"oidc_token_server.py"*"--pid-file $OIDC_PID_FILE"* ]]
}

secure_token_server_pid() { running_pid "$OIDC_PID_FILE" secure_is_our_token_server; }

# Stop the token server of this data directory if it runs (whatever
# KAFKA_SECURE says, so a secured start is always cleaned up by `stop`).
secure_stop_token_server() {
  local pid
  pid="$(secure_token_server_pid)"
  if [[ -n "$pid" ]]; then
    log "stopping OIDC token server (pid $pid)"
    # Up to 5 s, then SIGKILL, unannounced: a stateless test helper.
    stop_process "$pid" secure_is_our_token_server 5
  fi
  rm -f "$OIDC_PID_FILE"
}

secure_start_token_server() {
  secure_stop_token_server
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (KAFKA_SECURE=1 runs the OIDC token server with it)"
  port_open "$KAFKA_OIDC_PORT" && die "OIDC token server port $KAFKA_OIDC_PORT is in use (set KAFKA_OIDC_PORT)"
  local -a detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  # The server writes its pid file once it listens. 9>&- keeps the start lock.
  ${detach[@]+"${detach[@]}"} "$PYTHON" "$CONF_DIR/oidc_token_server.py" \
    --host 127.0.0.1 --port "$KAFKA_OIDC_PORT" --key "$TLS_DIR/oidc-signing.key" \
    --kid "$SECURE_OIDC_KID" --issuer "$SECURE_OIDC_BASE" --audience "$SECURE_OIDC_AUDIENCE" \
    --scope "$SECURE_OIDC_SCOPE" --client "$SECURE_OIDC_CLIENT_ID:$SECURE_OIDC_CLIENT_SECRET" \
    --pid-file "$OIDC_PID_FILE" </dev/null >>"$OIDC_LOG" 2>&1 9>&- &
  local _
  for _ in $(seq 100); do
    [[ -n "$(secure_token_server_pid)" ]] && port_open "$KAFKA_OIDC_PORT" && return 0
    sleep 0.1
  done
  tail -n 20 "$OIDC_LOG" >&2 || true
  die "the OIDC token server did not start on 127.0.0.1:$KAFKA_OIDC_PORT (log $OIDC_LOG)"
}

# --- hooks called by kafka.sh --------------------------------------------------

# Stop the token server again if `start` fails after starting it.
secure_on_exit() {
  if [[ "$SECURE_STARTED" != 1 ]]; then
    secure_stop_token_server
  fi
}

# cmd_start, before the properties are written and the storage formatted:
# ports, TLS material, credentials, token server, JVM flags, SCRAM at format.
secure_prepare() {
  secure_enabled || return 0
  local p
  for p in "$KAFKA_SASL_SSL_PORT" "$KAFKA_SSL_PORT"; do
    port_open "$p" && die "port $p for a secured listener is in use (set KAFKA_SASL_SSL_PORT / KAFKA_SSL_PORT)"
  done
  secure_make_tls
  secure_write_credentials
  trap secure_on_exit EXIT
  secure_start_token_server
  # Kafka 4 refuses OAuth URLs that this system property does not list.
  KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:+$KAFKA_JVM_OPTS }-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=$SECURE_OIDC_BASE/jwks"
  if [[ ! -f "$DATA_DIR/data/meta.properties" ]]; then
    SECURE_FORMAT_ARGS=()
    local user password mech
    while read -r user password; do
      for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
        SECURE_FORMAT_ARGS+=(--add-scram "$mech=[name=$user,password=$password]")
      done
    done < <(secure_scram_users)
    SECURE_SCRAM_AT_FORMAT=1
  fi
}

# "user password" lines: every SCRAM user of the test broker.
secure_scram_users() {
  echo "$SECURE_SCRAM_USER $SECURE_SCRAM_PASSWORD"
  local u
  for u in "${SECURE_ACL_USERS[@]}"; do
    echo "$u $u$SECURE_ACL_PASSWORD_SUFFIX"
  done
}

# cmd_start, once broker $1 is ready: the SCRAM users for storage that was
# formatted without them (first secured start of an older data directory).
# A failure stops the broker again, so a start either fully works or leaves
# nothing running.
secure_finish() {
  secure_enabled || return 0
  local pid="$1" mech user password stamp
  while read -r user password; do
    stamp="$TLS_DIR/scram-user-$user.done"
    if [[ "$SECURE_SCRAM_AT_FORMAT" == 1 ]]; then
      touch "$stamp"
      continue
    fi
    # The first releases of this script kept one stamp for their one user.
    [[ "$user" == "$SECURE_SCRAM_USER" && -f "$SCRAM_STAMP" ]] && continue
    [[ -f "$stamp" ]] && continue
    log "adding SCRAM user $user to the existing storage"
    # One mechanism per request: the controller refuses two changes to the
    # same user in one AlterUserScramCredentials request.
    for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
      if ! run_tool kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
          --command-config "$CONF_DIR/admin-probe.properties" --alter --entity-type users \
          --entity-name "$user" --add-config "$mech=[password=$password]" \
          >/dev/null; then
        log "error: adding the $mech credential of $user failed; stopping the broker"
        terminate "$pid"
        exit 1
      fi
    done
    touch "$stamp"
  done < <(secure_scram_users)
  SECURE_STARTED=1
  log "secured listeners: SASL_SSL 127.0.0.1:$KAFKA_SASL_SSL_PORT, SSL (mTLS) 127.0.0.1:$KAFKA_SSL_PORT, OIDC $SECURE_OIDC_BASE/token; client settings in $CREDENTIALS_ENV"
}

# cmd_start when our broker already runs: it must have been started secured,
# and its token server must be up.
secure_check_running() {
  secure_enabled || return 0
  grep -q "^listeners=.*SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT" "$PROPS" 2>/dev/null \
    || die "the running broker was started without KAFKA_SECURE=1 (or with other ports); run 'stop' first"
  if [[ -z "$(secure_token_server_pid)" ]]; then
    secure_start_token_server
  fi
}

# `kafka.sh env`: the client settings as well.
secure_env() {
  secure_enabled || return 0
  [[ -f "$CREDENTIALS_ENV" ]] || die "no $CREDENTIALS_ENV yet; run: KAFKA_SECURE=1 $0 start"
  grep -v '^#' "$CREDENTIALS_ENV" | grep -v '^KAFKA_BOOTSTRAP='
}
