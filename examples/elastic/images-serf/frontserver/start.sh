#!/bin/sh
set -e
# nginx needs the name appserver to resolve when it starts: wait (at most 60 s) for one.
i=0
until getent hosts appserver >/dev/null; do
  i=$((i + 1)); [ "$i" -le 600 ] || { echo "no appserver in DNS" >&2; exit 1; }
  sleep 0.1
done
nginx
exec serf agent -node "$(hostname)" -tag role=frontserver -join dnsserver \
  -event-handler "user:frontserver_reload=/etc/serf/reload.sh"
