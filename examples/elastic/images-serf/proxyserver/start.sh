#!/bin/sh
set -e
redis-server --daemonize yes --save '' --appendonly no --bind 127.0.0.1
i=0
until redis-cli ping >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -le 100 ] || exit 1
  sleep 0.05
done
redis-cli del frontend:localhost >/dev/null
redis-cli rpush frontend:localhost frontserver >/dev/null
/etc/serf/render.sh
nginx
exec serf agent -node "$(hostname)" -tag role=proxyserver -join dnsserver \
  -event-handler "member-join,member-leave,member-failed=/etc/serf/handler.sh"
