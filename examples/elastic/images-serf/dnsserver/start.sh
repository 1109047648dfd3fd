#!/bin/sh
set -e
dnsmasq --pid-file=/run/dnsmasq.pid --addn-hosts=/etc/dnsmasq-docker --log-facility=-
exec serf agent -node "$(hostname)" -tag role=dnsserver \
  -event-handler "member-join,member-leave,member-failed,member-update=/etc/serf/handler.sh"
