#!/bin/sh
# haproxy-cfg.sh LISTEN NODE_ID=ADDR:PORT... - prints the haproxy
# configuration of consultd's entry point for these nodes:
#   - health checks on /readyz (a node without its database, or draining,
#     leaves the rotation within two seconds and comes back by itself);
#   - timeouts that keep Server-Sent Events streams open (a heartbeat
#     comes every 15 s; "timeout tunnel" once a stream is established);
#   - /n/<node-id>/... goes to that node with the prefix removed (the media
#     of a consultation lives on one node, which WHIP/WHEP are redirected
#     to), while it is alive (/healthz): draining does not cut it off;
#   - X-Forwarded-For for consultd's --trusted-proxies;
#   - a request whose node refused the connection is sent to another one.
# contrib/haproxy.cfg is its output for scripts/cluster.sh's three nodes.
set -eu
listen=${1:?LISTEN}
shift
cat <<CFG
# consultd's entry point (scripts/haproxy-cfg.sh $listen $*)
global
    maxconn 4096

defaults
    mode http
    option forwardfor
    option redispatch
    # A new connection to the node for each request: a node that stops
    # (drained, upgraded) never gets a request on a connection it closes.
    option http-server-close
    retries 2
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 5s
    default-server inter 1s fall 2 rise 2
    # A node that is gone (its /n/<id>/ prefix, or every node): a clear 503
    # that says when to retry, in consultd's error format, never a hang.
    http-error status 503 content-type application/json hdr Retry-After 2 string "{\\"error\\":\\"node_unavailable\\",\\"message\\":\\"no node can answer this now; retry\\"}"

frontend consultd
    bind $listen
CFG
for n in "$@"; do
    id=${n%%=*}
    echo "    use_backend node_$id if { path_beg /n/$id/ }"
done
cat <<CFG
    default_backend nodes

backend nodes
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
CFG
for n in "$@"; do
    echo "    server ${n%%=*} ${n#*=} check"
done
for n in "$@"; do
    id=${n%%=*}
    cat <<CFG

backend node_$id
    # Alive is enough here: a draining node (readyz 503) still serves the
    # consultations it holds, which reach it by this prefix.
    option httpchk GET /healthz
    http-check expect status 200
    http-request replace-path /n/$id(/.*) \\1
    server $id ${n#*=} check
CFG
done
