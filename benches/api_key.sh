# Sourced by the benchmark scripts: creditd answers purchases, holds and
# spends only to an API key (SPEC §9.1). start_demo runs `creditd demo` with
# a known admin token; make_key makes a storefront + enhancement key and
# exports it as API_KEY, which the wrk scripts send.
BENCH_ADMIN_TOKEN=${BENCH_ADMIN_TOKEN:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}
export CREDITD_ADMIN_TOKEN=$BENCH_ADMIN_TOKEN

# make_key URL: exports API_KEY.
make_key() {
  API_KEY=$(curl -sf -X POST "$1/api/admin/keys" -H "Authorization: Bearer $BENCH_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"name":"benchmark","scopes":["storefront","enhancement"]}' |
    sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
  [ -n "$API_KEY" ] || { echo "could not make an API key at $1" >&2; return 1; }
  export API_KEY
}
